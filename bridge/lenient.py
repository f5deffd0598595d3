"""Quiet pydicom while it handles values in ACR-NEMA forms on purpose.

pydicom validates values as they are set and read, and warns about ACR-NEMA dates,
times and numbers. Where the package handles such values deliberately (decoding them,
writing ACR-NEMA files), :func:`lenient` turns that validation off for the block.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from pydicom import config

__all__ = ["lenient"]


@contextlib.contextmanager
def lenient() -> Iterator[None]:
    settings = config.settings
    reading, writing = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = config.IGNORE
    settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = reading, writing

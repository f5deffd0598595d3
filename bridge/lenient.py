"""Quiet pydicom while the bridge handles values in ACR-NEMA forms on purpose, in its own
thread only.

pydicom validates values as they are set and read, and warns about (or, if so configured,
refuses) ACR-NEMA dates, times and numbers. Where the bridge handles such values
deliberately (decoding them, converting, writing ACR-NEMA files), :func:`lenient` turns
that validation off for the block.

pydicom keeps its validation modes in one process-wide object, ``pydicom.config.settings``.
Setting them around each block, as this module once did, is a race: the service converts
while forwarder threads and pynetdicom read and write data sets, and an API user's own
code runs beside both. Another thread would find validation off at random moments, and
two overlapping blocks (A in, B in, A out, B out) ended B's block early, or left
validation off for good.

So the modes are never toggled. :func:`configure`, run once (the command line does it at
start; :func:`lenient` does it on first use, idempotently), gives pydicom's settings object
a subclass whose two validation modes read "ignore" while the *current context* is inside
a :func:`lenient` block and otherwise whatever pydicom's own setting is: its default, or
what the user set (the setters are pydicom's). The flag is a :class:`contextvars.ContextVar`,
so each thread (and each asyncio task) has its own; nesting works. pydicom reads the modes
through ``config.settings`` at each use, which is what makes a per-context answer possible.

Warnings are not filtered per block either (``warnings.catch_warnings`` is process-wide
too): with validation off, pydicom does not emit the value warnings in the first place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from pydicom import config

__all__ = ["configure", "is_lenient", "lenient"]

_LENIENT: ContextVar[bool] = ContextVar("bridge_lenient", default=False)
# pydicom's own properties, whose getters give its default or the user's setting
_READING: property = vars(config.Settings)["reading_validation_mode"]
_WRITING: property = vars(config.Settings)["writing_validation_mode"]


class _BridgeSettings(config.Settings):
    """pydicom's settings; validation reads IGNORE inside a :func:`lenient` block."""

    @property
    def reading_validation_mode(self) -> int:
        if _LENIENT.get():
            return int(config.IGNORE)
        return int(_READING.__get__(self))

    @reading_validation_mode.setter
    def reading_validation_mode(self, value: int) -> None:
        _READING.__set__(self, value)

    @property
    def writing_validation_mode(self) -> int:
        if _LENIENT.get():
            return int(config.IGNORE)
        return int(_WRITING.__get__(self))

    @writing_validation_mode.setter
    def writing_validation_mode(self, value: int) -> None:
        _WRITING.__set__(self, value)


def configure() -> None:
    """Make pydicom's validation modes answer per context; safe to call any number of times.

    Nothing changes for code outside :func:`lenient` blocks: pydicom's defaults and the
    modes a user sets still apply. The command line calls it at start; API users need not
    (every lenient block calls it), but may, to have it done before their threads start.
    """
    settings = config.settings
    if not isinstance(settings, _BridgeSettings):
        # One attribute store, atomic: a concurrent call makes the same change.
        settings.__class__ = _BridgeSettings


def is_lenient() -> bool:
    """Whether the current thread (context) is inside a :func:`lenient` block."""
    return _LENIENT.get()


@contextlib.contextmanager
def lenient() -> Iterator[None]:
    """pydicom's value validation off for this block, in this thread only."""
    configure()
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)

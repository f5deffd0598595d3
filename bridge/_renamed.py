"""Old names of renamed classes, kept importable with a :class:`DeprecationWarning`.

Some classes were renamed so that no name means two things across the package (issue 10:
``LinkDown`` was a port exception and a link-stack event; ``Frame``, ``FrameDecoder``,
``Message``, ``LineState``, ``Session`` and ``Transport`` each named two classes). A
module that renamed one keeps the old name through its ``__getattr__`` (PEP 562), which
calls :func:`old_name`: the old name gives the very same object, and warns.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

__all__ = ["old_name"]


def old_name(
    module: str, renamed: Mapping[str, str], namespace: Mapping[str, object], name: str
) -> object:
    """The object an old ``name`` of ``module`` stands for, with a DeprecationWarning."""
    new = renamed.get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} is deprecated: it is now {module}.{new}",
        DeprecationWarning,
        stacklevel=3,
    )
    return namespace[new]

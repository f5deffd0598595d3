"""Old names of renamed classes, kept importable with a :class:`DeprecationWarning`.

Some classes were renamed so that no name means two things across the package (issue 10:
``LinkDown`` was a port exception and a link-stack event; ``Frame``, ``FrameDecoder``,
``Message``, ``LineState``, ``Session`` and ``Transport`` each named two classes). A
module that renamed one keeps the old name through its ``__getattr__`` (PEP 562), which
calls :func:`old_name`: the old name gives the very same object, and warns.

Some modules moved (issue 10: pure protocol code out of ``bridge/ports/``). The old
module stays as a stub whose ``__getattr__`` is made by :func:`moved_module`: each name
imported from the old path is the very same object of the new module, with a warning;
:func:`moved_names` makes it for a stub that forwards only the names it used to export.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = ["moved_module", "moved_names", "old_name"]


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


def moved_module(
    module: str,
    new: str,
    elsewhere: Mapping[str, str] | None = None,
    *,
    only: Collection[str] | None = None,
) -> Callable[[str], object]:
    """The ``__getattr__`` of the stub left at the old path ``module`` of the module ``new``.

    A name looked up on the stub is the same object from ``new`` (or from the module that
    ``elsewhere`` names for it), with a DeprecationWarning naming where it lives now. Dunder
    names are not forwarded, so tools that probe a module (``__path__``...) see the stub;
    with ``only``, no name outside it is forwarded either.
    """
    moved = dict(elsewhere or {})

    def __getattr__(name: str) -> object:
        if name.startswith("__") or (only is not None and name not in only):
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = moved.get(name, new)
        value = getattr(importlib.import_module(target), name)
        warnings.warn(
            f"{module} is deprecated: {name} is now {target}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    return __getattr__


def moved_names(
    module: str, homes: Mapping[str, Iterable[str]]
) -> tuple[list[str], Callable[[str], object]]:
    """The ``__all__`` and the ``__getattr__`` of the stub left at the old path ``module``
    when its names moved to other modules: ``homes`` maps each new module to the names it
    took.

    The stub forwards only those names, as :func:`moved_module` does (the very same object,
    with a DeprecationWarning naming where it lives now); any other name is an
    AttributeError, as it was when the old module exported just those.
    """
    where = {name: home for home, names in homes.items() for name in names}
    return list(where), moved_module(module, "", where, only=where)

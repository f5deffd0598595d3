"""Former home of the phantom generator: now :mod:`bridge.testing.phantom` (deprecated).

Every name still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_names`).
"""

from bridge._renamed import moved_names

__all__, __getattr__ = moved_names(
    __name__,
    {
        "bridge.testing.phantom": (
            "PhantomSpec",
            "phantom_dataset",
            "phantom_file",
            "phantom_pixels",
        )
    },
)

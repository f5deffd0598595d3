"""Former home of the requesting role: now :mod:`bridge.link.requester` (and
:func:`bridge.testing.phantom.phantom_images`) (deprecated).

Every name still imports from here, the same object, with a :class:`DeprecationWarning`
(:func:`bridge._renamed.moved_names`).
"""

from bridge._renamed import moved_names

__all__, __getattr__ = moved_names(
    __name__,
    {
        "bridge.link.requester": ("Image", "ImageResult", "Scanner", "load_images"),
        "bridge.testing.phantom": ("phantom_images",),
    },
)

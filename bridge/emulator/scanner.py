"""Former home of the requesting role: now :mod:`bridge.link.requester` (and
:func:`bridge.testing.phantom.phantom_images`); kept so that old imports work.
"""

from bridge.link.requester import Image, ImageResult, Scanner, load_images
from bridge.testing.phantom import phantom_images

__all__ = ["Image", "ImageResult", "Scanner", "load_images", "phantom_images"]

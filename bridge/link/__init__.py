"""The link at work: the loop that drives a link stack over a port, and the link's two roles.

* :mod:`bridge.link.endpoint`: :class:`Endpoint`, a sans-I/O
  :class:`~bridge.acrnema.stack.LinkStack` driven over a port (the only loop with a clock
  and a wait; it turns a lost link into a fresh stack);
* :mod:`bridge.link.responder`: :class:`Responder`, the answering role (what the bridge
  is to a scanner), and :class:`Answer`, a store handler's answer;
* :mod:`bridge.link.requester`: :class:`Scanner`, the requesting role (what a scanner is
  to the bridge), with :class:`Image`, :class:`ImageResult` and :func:`load_images`;
* :mod:`bridge.link.receiver`: :class:`FolderWriter`, the store handler of the
  emulator's receiver role (each image to a file).

The layers themselves are in :mod:`bridge.acrnema`; the ports in :mod:`bridge.ports`.
"""

from bridge.link.endpoint import Endpoint
from bridge.link.receiver import FolderWriter
from bridge.link.requester import Image, ImageResult, Scanner, link_syntax, load_images
from bridge.link.responder import Answer, Responder, ResponderStats, StoreHandler

__all__ = [
    "Answer",
    "Endpoint",
    "FolderWriter",
    "Image",
    "ImageResult",
    "Responder",
    "ResponderStats",
    "Scanner",
    "StoreHandler",
    "link_syntax",
    "load_images",
]

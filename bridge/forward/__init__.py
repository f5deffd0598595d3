"""DICOM egress: send spooled objects to destinations, verify them, classify outcomes.

* :mod:`bridge.forward.status`: DIMSE status -> DONE / RETRY / FAIL, and
  :class:`ForwardError`;
* :mod:`bridge.forward.scu`: :class:`Destination`, :class:`Sender` (one reused
  association per destination, Storage Commitment, TLS) and :func:`echo`;
* :mod:`bridge.forward.tcp`: the Nagle / delayed-ACK fix for pynetdicom sockets.

The forward loop that drives a :class:`Sender` from the spool is
:mod:`bridge.forward.runner`.
"""

from bridge.forward.scu import Destination, Item, Sender, TlsSettings, echo
from bridge.forward.status import ForwardError, Outcome, Result, classify_status

__all__ = [
    "Destination",
    "ForwardError",
    "Item",
    "Outcome",
    "Result",
    "Sender",
    "TlsSettings",
    "classify_status",
    "echo",
]

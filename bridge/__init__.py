"""acrnema-bridge: ACR-NEMA 2.0 equipment and files to DICOM networks.

The public Python API (docs/api.md) is what ``__all__`` names, importable from ``bridge``
whatever module it lives in today:

* ports: :func:`open_port` (a port by URL, docs/ports.md);
* the link: :class:`LinkStack` (sans-I/O), :class:`Endpoint` (a stack driven over a
  port), :class:`Responder` and :class:`Answer` (the answering role) with
  :class:`LinkStatus`, :class:`Message`,
  the link profile (:class:`Profile`, :data:`REFERENCE`, :func:`load_profile`);
* conversion: :func:`convert`, :class:`ConvertOptions`, :class:`ConversionResult`,
  :class:`PatientIdPolicy`, :class:`ByteOrder`, :class:`Repair`, :class:`RepairKind`;
* the spool: :class:`Spool`, :class:`ObjectInfo`, :class:`DeliveryState`,
  :func:`dataset_bytes`, :func:`object_info`, :func:`ingest_file`, :class:`IngestStatus`;
* forwarding: :class:`Forwarder`, :class:`RetryPolicy`, :class:`RunSummary`,
  :class:`Destination`, :class:`TlsSettings`, :func:`echo`;
* the service: :class:`Bridge` (what ``acrnema-bridge run`` runs), :class:`BridgeStats`;
* the errors, all under :class:`BridgeError` and all defined in :mod:`bridge.errors`
  (the tree is drawn in its docstring);
* :data:`__version__`, the one place the version is written (pyproject.toml reads it).

Only the errors (:mod:`bridge.errors`, pure) are imported with the package. Everything
else is imported on first use (module ``__getattr__``), so ``import bridge`` stays cheap
(about 0.03 s, against 0.3 s for pydicom, numpy and pynetdicom) and the pure packages,
which import ``bridge`` for the version, do not pull in the ports, threads and sockets of
the rest.

The package is silent by default: it logs through :mod:`logging` under the ``bridge``
name with a :class:`logging.NullHandler`; only the command line installs handlers.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from bridge.errors import (
    BoxError,
    BoxProtocolError,
    BoxVersionError,
    BridgeError,
    CaptureError,
    ConfigError,
    ConversionError,
    FaultSpecError,
    ForwarderFailed,
    ForwardError,
    HandshakeTimeout,
    ImageDataError,
    LinkLost,
    LinkProtocolError,
    LocalLinkProtocolError,
    LocalProtocolError,
    NoResponse,
    PortError,
    PortIOError,
    PortTimeoutError,
    PortUnavailableError,
    PortURLError,
    ProfileError,
    ProtocolError,
    RemoteLinkProtocolError,
    RemoteProtocolError,
    RenderError,
    SettingsError,
    SpoolBusyError,
    SpoolDamagedError,
    SpoolError,
    SpoolPathError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy table below resolves to, spelled out for type checkers
    from bridge.acrnema.commands import Message
    from bridge.acrnema.elements import ByteOrder
    from bridge.acrnema.stack import LinkStack
    from bridge.dicom.core import ConversionResult, ConvertOptions, PatientIdPolicy, convert
    from bridge.dicom.pixels import Repair, RepairKind
    from bridge.forward.runner import Forwarder, RetryPolicy, RunSummary
    from bridge.forward.scu import Destination, TlsSettings, echo
    from bridge.ingest import IngestStatus, ingest_file
    from bridge.link.endpoint import Endpoint
    from bridge.link.responder import Answer, Responder
    from bridge.ports.registry import open_port
    from bridge.profile import REFERENCE, LinkStatus, Profile, load_profile
    from bridge.service import Bridge, BridgeStats
    from bridge.spool.objects import dataset_bytes, object_info
    from bridge.spool.store import DeliveryState, ObjectInfo, Spool

# Public name -> the module that defines it; imported on first access. A test checks that
# this table and the TYPE_CHECKING imports above say the same.
_LAZY = {
    "Message": "bridge.acrnema.commands",
    "ByteOrder": "bridge.acrnema.elements",
    "LinkStack": "bridge.acrnema.stack",
    "ConversionResult": "bridge.dicom.core",
    "ConvertOptions": "bridge.dicom.core",
    "PatientIdPolicy": "bridge.dicom.core",
    "convert": "bridge.dicom.core",
    "Repair": "bridge.dicom.pixels",
    "RepairKind": "bridge.dicom.pixels",
    "Forwarder": "bridge.forward.runner",
    "RetryPolicy": "bridge.forward.runner",
    "RunSummary": "bridge.forward.runner",
    "Destination": "bridge.forward.scu",
    "TlsSettings": "bridge.forward.scu",
    "echo": "bridge.forward.scu",
    "IngestStatus": "bridge.ingest",
    "ingest_file": "bridge.ingest",
    "Endpoint": "bridge.link.endpoint",
    "Answer": "bridge.link.responder",
    "Responder": "bridge.link.responder",
    "open_port": "bridge.ports.registry",
    "REFERENCE": "bridge.profile",
    "LinkStatus": "bridge.profile",
    "Profile": "bridge.profile",
    "load_profile": "bridge.profile",
    "Bridge": "bridge.service",
    "BridgeStats": "bridge.service",
    "dataset_bytes": "bridge.spool.objects",
    "object_info": "bridge.spool.objects",
    "DeliveryState": "bridge.spool.store",
    "ObjectInfo": "bridge.spool.store",
    "Spool": "bridge.spool.store",
}

__all__ = [
    "REFERENCE",
    "Answer",
    "BoxError",
    "BoxProtocolError",
    "BoxVersionError",
    "Bridge",
    "BridgeError",
    "BridgeStats",
    "ByteOrder",
    "CaptureError",
    "ConfigError",
    "ConversionError",
    "ConversionResult",
    "ConvertOptions",
    "DeliveryState",
    "Destination",
    "Endpoint",
    "FaultSpecError",
    "ForwardError",
    "Forwarder",
    "ForwarderFailed",
    "HandshakeTimeout",
    "ImageDataError",
    "IngestStatus",
    "LinkLost",
    "LinkProtocolError",
    "LinkStack",
    "LinkStatus",
    "LocalLinkProtocolError",
    "LocalProtocolError",
    "Message",
    "NoResponse",
    "ObjectInfo",
    "PatientIdPolicy",
    "PortError",
    "PortIOError",
    "PortTimeoutError",
    "PortURLError",
    "PortUnavailableError",
    "Profile",
    "ProfileError",
    "ProtocolError",
    "RemoteLinkProtocolError",
    "RemoteProtocolError",
    "RenderError",
    "Repair",
    "RepairKind",
    "Responder",
    "RetryPolicy",
    "RunSummary",
    "SettingsError",
    "Spool",
    "SpoolBusyError",
    "SpoolDamagedError",
    "SpoolError",
    "SpoolPathError",
    "TlsSettings",
    "__version__",
    "convert",
    "dataset_bytes",
    "echo",
    "ingest_file",
    "load_profile",
    "object_info",
    "open_port",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())

"""Former home of :class:`Endpoint` and the answering role; kept so that old imports work.

:class:`Endpoint` now lives in :mod:`bridge.link.endpoint`; :class:`Responder`,
:class:`Answer`, :class:`ResponderStats` and :data:`StoreHandler` in
:mod:`bridge.link.responder` (docs/architecture.md, "Moves"). New code imports from
there, or from :mod:`bridge`.
"""

from bridge.link.endpoint import Endpoint
from bridge.link.responder import Answer, Responder, ResponderStats, StoreHandler

__all__ = ["Answer", "Endpoint", "Responder", "ResponderStats", "StoreHandler"]

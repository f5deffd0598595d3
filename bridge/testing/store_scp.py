"""An embedded DICOM store: a pynetdicom Storage SCP that writes what it receives.

Used by ``acrnema-bridge demo`` (the PACS at the end of the chain) and by the link
benchmark. It listens on 127.0.0.1 only, accepts every storage SOP class in explicit and
implicit VR little endian, and writes each object as a Part 10 file named by its SOP
Instance UID. Not a PACS: no query, no duplicate handling beyond overwriting.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

__all__ = ["EmbeddedStore"]

log = logging.getLogger("bridge.emulator.store_scp")  # the name users' log filters know


class EmbeddedStore:
    """A Storage SCP on 127.0.0.1 writing to ``folder``; use as a context manager."""

    def __init__(self, folder: Path, *, ae_title: str = "DEMO_PACS", port: int = 0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ae_title = ae_title
        self._port = port
        self.received: list[Path] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: Any = None

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = self.folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with self._changed:
            self.received.append(path)
            self._changed.notify_all()
        return 0x0000

    def start(self) -> EmbeddedStore:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server(
            ("127.0.0.1", self._port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``AE@HOST:PORT``, as ``--dest`` takes it."""
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` objects have arrived; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> EmbeddedStore:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

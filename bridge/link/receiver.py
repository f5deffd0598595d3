"""The emulated receiver: takes store requests and writes each image to a folder.

The receiver role of ``acrnema-bridge emulate`` (the other end for a bench that tests a
scanner-side adapter, or the bridge's own ``loop://`` tests): every store request's data
set is written as it arrived, an ACR-NEMA file in the link's byte order, named by arrival
order (``IMG00001.acr`` ...), atomically (a temporary file, fsync, rename), before the
success answer goes out.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridge.acrnema.commands import Message
from bridge.link.responder import Answer
from bridge.profile import LinkStatus

__all__ = ["FolderWriter"]


class FolderWriter:
    """A store handler for :class:`bridge.link.responder.Responder` that writes files."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, message: Message) -> Answer:
        final = self.folder / f"IMG{self.count + 1:05d}.acr"
        tmp = final.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fp:
                fp.write(message.data)
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return Answer(LinkStatus.OUT_OF_RESOURCES, f"cannot write {final.name}: {exc.strerror}")
        self.count += 1
        return Answer(LinkStatus.SUCCESS)

"""``pty://``: a new pseudo-terminal; this port is its master, another program its slave.

The emulated serial path on POSIX: ``acrnema-bridge emulate --port pty://`` plays the
far side on the master, and the bridge opens the slave as a serial device
(``serial:///dev/pts/7``), which goes through pyserial exactly as a real adapter
does. :attr:`PtyPort.device` is the slave's path (logged at WARNING when opened, so an
operator can find it). The port keeps the slave open itself, in raw mode, so the pty
lives until this port closes, whoever opens and closes the slave in between; the peer is
found through the raw word stream's line-state units
(:mod:`bridge.wordstream`), not through the pty's hang-up. :class:`PtyStream` is
the same pty as a plain byte stream (an emulated interface box serves the box protocol on
it, :mod:`bridge.emulator.box`). Not on Windows.
"""

from __future__ import annotations

import logging
import os
import select

from bridge.ports._url import parse_url, seconds
from bridge.ports.base import PortError, PortUnavailableError
from bridge.ports.bytestream import ByteStream
from bridge.ports.driver import StreamWordPort

__all__ = ["PtyPort", "PtyStream", "open_pty", "open_pty_stream"]

log = logging.getLogger(__name__)

_WRITE_MAX = 1 << 16


class PtyStream(ByteStream):
    """The master side of a new pty as a byte stream; the slave is :attr:`device`."""

    def __init__(self, url: str = "pty://", *, write_timeout: float = 5.0) -> None:
        self.url = url
        self.write_timeout = write_timeout
        try:
            import tty
        except ImportError as exc:  # Windows
            raise PortUnavailableError(f"{url}: no pseudo-terminals on this system") from exc
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise PortError(f"{url}: cannot create a pty: {exc}") from exc
        try:
            tty.setraw(slave)  # no echo, no translation, until the slave's user sets it up
            os.set_blocking(master, False)
            self.device = os.ttyname(slave)
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise PortError(f"{url}: cannot set up the pty: {exc}") from exc
        self._master = master
        self._slave = slave
        self._released = False
        log.warning("%s: the other end is %s", url, self.device)

    @property
    def connected(self) -> bool:
        return not self._released

    def connect(self, timeout: float) -> bool:
        return not self._released  # the pty lives as long as this stream

    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        try:
            return os.read(self._master, max_bytes) or None
        except BlockingIOError:
            pass
        readable, _, _ = select.select([self._master], [], [], timeout)
        if not readable:
            return b""
        try:
            return os.read(self._master, max_bytes) or None
        except BlockingIOError:
            return b""

    def write_some(self, data: memoryview, timeout: float) -> int:
        try:
            return os.write(self._master, data[:_WRITE_MAX])
        except BlockingIOError:
            pass
        select.select([], [self._master], [], timeout)
        return 0

    def disconnect(self) -> None:
        pass  # nothing to drop: the pty stays until release

    def release(self) -> None:
        if not self._released:
            self._released = True
            os.close(self._master)
            os.close(self._slave)


PtyPort = StreamWordPort
"""The port of ``pty://``: the one :class:`StreamWordPort` (the old class name; the
stream's ``device`` is the port's)."""


def _pty_options(url: str) -> float:
    parsed = parse_url(url, "pty", {"write_timeout": seconds})
    if parsed.location:
        raise PortError(f"{url}: pty:// creates a new pty; open an existing one as serial://")
    write_timeout: float = parsed.options.get("write_timeout", 5.0)
    return write_timeout


def open_pty(url: str) -> StreamWordPort:
    """The port of ``pty://`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_pty_stream(url))


def open_pty_stream(url: str) -> PtyStream:
    """The byte stream of ``pty://`` (an emulated box's end; the host opens ``.device``)."""
    return PtyStream(url, write_timeout=_pty_options(url))

"""``serial://``, ``rs485://`` and ``ftdi://``: the link over a serial device (pyserial).

``serial://DEVICE?baud=N`` opens a serial device (``serial:///dev/ttyACM0``,
``serial://COM3``, a pty's slave such as ``serial:///dev/pts/7``) through pyserial's
``serial_for_url``. ``rs485://DEVICE?baud=N`` is the same with the kernel's RS-485 mode
on (pyserial's ``RS485Settings``: RTS drives the transmitter while sending); a device
that refuses the RS-485 ioctl (a pty does, and so do many USB RS-485 adapters, which
switch direction in hardware) is used in plain mode after a warning in the log.
``ftdi://...`` opens an FTDI UART through pyftdi's pyserial URL handler
(``pyftdi.serialext``), for example ``ftdi://ftdi:232h/1?baud=3000000``; it cannot be
tested without the hardware beyond the missing-library error.

All three carry the *raw word stream* of :mod:`bridge.wordstream`; the same
devices opened as ``box+serial://``, ``box+rs485://`` or ``box+ftdi://`` speak the
interface-box protocol instead (:mod:`bridge.ports.box`), which unlike the raw word
stream survives a lost byte. :class:`SerialStream` is the device as a plain byte stream,
shared by both (``open_serial_stream`` and the others). pyserial
(``pip install acrnema-bridge[serial]``) and pyftdi (``pip install acrnema-bridge[ftdi]``)
are imported only when such a port is opened; without them opening one raises
:class:`~bridge.ports.base.PortUnavailableError`.

Options: ``baud`` (default 115200; a USB CDC device ignores it), ``rtscts`` (hardware
flow control, 0 or 1, default 0), ``write_timeout`` (seconds without progress before
the peer counts as gone, default 5). XON/XOFF is never used: the stream is binary.
After the device is lost (unplugged, or the other end of a pty closed),
:meth:`~bridge.ports.base.WordPort.wait_peer` tries to open it again.
"""

from __future__ import annotations

import importlib
import logging
import select
import time
from types import ModuleType
from typing import Any

from bridge.ports._url import flag, parse_url, positive_int, seconds
from bridge.ports.base import PortError, PortUnavailableError
from bridge.ports.bytestream import ReopeningStream
from bridge.ports.driver import StreamWordPort

__all__ = [
    "SerialPort",
    "SerialStream",
    "open_ftdi",
    "open_ftdi_stream",
    "open_rs485",
    "open_rs485_stream",
    "open_serial",
    "open_serial_stream",
]

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
_WRITE_MAX = 1 << 16  # pyserial copies what it is given: hand it a slice at a time
_POLL_S = 0.002
_OPTIONS = {"baud": positive_int, "rtscts": flag, "write_timeout": seconds}


def _pyserial() -> ModuleType:
    try:
        import serial
    except ImportError as exc:
        raise PortUnavailableError(
            "serial ports need pyserial: pip install acrnema-bridge[serial]"
        ) from exc
    return serial


class SerialStream(ReopeningStream):
    """A serial device as a byte stream (pyserial); reopened by :meth:`connect`."""

    def __init__(
        self,
        url: str,
        device: str,
        *,
        baud: int = DEFAULT_BAUD,
        rs485: bool = False,
        rtscts: bool = False,
        write_timeout: float = 5.0,
        opener: Any = None,
    ) -> None:
        self._serial = _pyserial()
        self.url = url
        self.device = device
        self.baud = baud
        self.rs485 = rs485
        self.rtscts = rtscts
        self.write_timeout = write_timeout
        self._opener = opener if opener is not None else self._serial.serial_for_url
        self._rs485_warned = False
        self._ser: Any = None
        self._fd: int | None = None
        try:
            self._open_device()
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise PortError(f"{url}: cannot open {device}: {exc}") from exc

    def _open_device(self) -> None:
        ser = self._opener(
            self.device,
            baudrate=self.baud,
            timeout=0,
            write_timeout=0,
            rtscts=self.rtscts,
            do_not_open=True,
        )
        ser.open()
        if self.rs485:
            self._rs485_mode(ser)
        try:
            self._fd = ser.fileno()
        except (AttributeError, OSError, ValueError, NotImplementedError):
            self._fd = None  # pyftdi: no file descriptor; poll instead
        self._ser = ser
        log.info("%s: opened %s at %d baud", self.url, self.device, self.baud)

    def _rs485_mode(self, ser: Any) -> None:
        rs485 = importlib.import_module("serial.rs485")
        try:
            ser.rs485_mode = rs485.RS485Settings()
        except (OSError, ValueError, NotImplementedError) as exc:
            ser.rs485_mode = None
            if not self._rs485_warned:
                self._rs485_warned = True
                log.warning(
                    "%s: %s refuses RS-485 mode (%s): using it in plain mode",
                    self.url,
                    self.device,
                    exc,
                )

    @property
    def connected(self) -> bool:
        return self._ser is not None

    def _open(self, timeout: float) -> None:
        self._open_device()

    def _open_failed(self) -> str:
        return f"reopening {self.device}"

    def read_some(self, max_bytes: int, timeout: float) -> bytes | None:
        ser = self._ser
        if ser is None:
            raise OSError("device not open")
        if timeout > 0 and not self._wait(ser, timeout, read=True):
            return b""
        return bytes(ser.read(max_bytes))

    def write_some(self, data: memoryview, timeout: float) -> int:
        ser = self._ser
        if ser is None:
            raise OSError("device not open")
        if self._fd is not None and not self._wait(ser, timeout, read=False):
            return 0  # no room: pyserial's non-blocking write would spin until there is
        try:
            written = ser.write(data[:_WRITE_MAX])
        except self._serial.SerialTimeoutException:
            written = 0  # nothing went: the output buffer is full
        if written:
            return int(written)
        if self._fd is None:
            self._wait(ser, timeout, read=False)
        return 0

    def _wait(self, ser: Any, timeout: float, *, read: bool) -> bool:
        """Wait until the device can be read (or written); False after ``timeout``."""
        if self._fd is not None:
            fds = [self._fd]
            ready = (
                select.select(fds, [], [], timeout) if read else select.select([], fds, [], timeout)
            )
            return bool(ready[0] or ready[1])
        deadline = time.monotonic() + timeout
        while read and not ser.in_waiting:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        if not read:
            time.sleep(min(timeout, _POLL_S))
        return True

    def disconnect(self) -> None:
        ser, self._ser = self._ser, None
        self._fd = None
        if ser is not None:
            ser.close()

    def release(self) -> None:
        self.disconnect()


SerialPort = StreamWordPort
"""The port of ``serial://``, ``rs485://`` and ``ftdi://``: the one
:class:`StreamWordPort` (the old class name; the stream's ``device``, ``baud`` and
``rs485`` are the port's)."""


def _settings(url: str, scheme: str) -> tuple[str, dict[str, Any]]:
    parsed = parse_url(url, scheme, _OPTIONS)
    if scheme != "ftdi" and not parsed.location:
        raise PortError(f"{url}: give a device, as in {scheme}:///dev/ttyUSB0")
    options = parsed.options
    settings = {
        "baud": options.get("baud", DEFAULT_BAUD),
        "rtscts": options.get("rtscts", False),
        "write_timeout": options.get("write_timeout", 5.0),
    }
    return parsed.location, settings


def _ftdi_opener(url: str) -> Any:
    _pyserial()
    try:
        serialext = importlib.import_module("pyftdi.serialext")
    except ImportError as exc:
        raise PortUnavailableError(
            f"{url}: FTDI ports need pyftdi: pip install acrnema-bridge[ftdi]"
        ) from exc
    return serialext.serial_for_url


def open_serial(url: str) -> StreamWordPort:
    """The port of ``serial://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_serial_stream(url))


def open_rs485(url: str) -> StreamWordPort:
    """The port of ``rs485://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_rs485_stream(url))


def open_ftdi(url: str) -> StreamWordPort:
    """The port of ``ftdi://...`` (the old factory; ``open_port`` does the same)."""
    return StreamWordPort(url, open_ftdi_stream(url))


def open_serial_stream(url: str) -> SerialStream:
    """The byte stream of ``serial://DEVICE[?...]`` (for ``box+serial://``)."""
    device, settings = _settings(url, "serial")
    return SerialStream(url, device, **settings)


def open_rs485_stream(url: str) -> SerialStream:
    """The byte stream of ``rs485://DEVICE[?...]`` (for ``box+rs485://``)."""
    device, settings = _settings(url, "rs485")
    return SerialStream(url, device, rs485=True, **settings)


def open_ftdi_stream(url: str) -> SerialStream:
    """The byte stream of ``ftdi://...`` (for ``box+ftdi://``)."""
    opener = _ftdi_opener(url)
    location, settings = _settings(url, "ftdi")
    return SerialStream(url, "ftdi://" + location, opener=opener, **settings)

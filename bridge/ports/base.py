"""What every port gives the link stack: a word link with a READY line each way.

A *port* is the only place where acrnema-bridge touches a device (ARCHITECTURE.md,
"ports/"). The stack above it (:mod:`bridge.acrnema.stack`) is sans-I/O and needs only
this: words, each with the value of its parity line, going out and coming in, and the
state of the other side's READY line (docs/link-profile.md, section 1.2).

Two kinds of port give that:

* a *word link* carries words and parity bits directly (``loop://``, later the
  interface box and the FTDI GPIO port);
* a *byte stream* (``tcp://``, ``serial://``, a pty) carries them in the *raw word
  stream* encoding of :mod:`bridge.wordstream`, which :class:`WordPort`
  implementations over byte streams use.

Rules every implementation keeps (tests/test_ports.py checks them over every port):

* a port opens with this side's READY asserted; the peer is not READY until it has been
  seen (call :meth:`WordPort.wait_peer` first);
* :meth:`WordPort.send` never blocks for long and never loses words while the peer is
  READY and reading; words sent while the peer is not READY (or while this side's own
  READY is dropped) are dropped (no line is driven towards a side that is gone) and the
  call raises :class:`LinkLost`. A peer that takes nothing for a while (a stream port's
  ``write_timeout``, 5 s by default) counts as gone;
* :meth:`WordPort.recv` returns the words that arrived, in order, as one
  :class:`~bridge.acrnema.physical.WordBuffer` of at most :data:`MAX_RECV_WORDS` words
  (defined in :mod:`bridge.engine`, which the engines share),
  waiting at most ``timeout`` seconds, and an empty buffer when nothing came; it raises
  :class:`LinkLost` once when the peer drops READY or the connection is lost, and then
  again on each call until the peer is READY again (and while this side's READY is
  dropped). A drop that is over before the next call is still reported, once, by the
  next :meth:`~WordPort.recv` or :meth:`~WordPort.send`;
* words the peer sent while both READY lines were up arrive before its drop:
  :meth:`~WordPort.recv` returns them, in order, before it raises :class:`LinkLost` for
  the drop, the close or the lost connection (:meth:`~WordPort.send` raises at once);
  :meth:`~WordPort.close` and :meth:`~WordPort.set_ready` drop READY after every word
  already sent, and nothing sent is lost by the end of the stream. Words arriving at a
  side whose READY is down, or from a side not READY, are discarded, and so are the
  words before a drop that :meth:`~WordPort.wait_peer` forgets;
* :meth:`WordPort.set_ready` drives this side's READY line;
* :meth:`WordPort.wait_peer` waits until the peer is READY (a ``tcp://`` port
  reconnects, a ``tcp-listen://`` port accepts the next connection here); a drop not
  yet reported is forgotten when it returns True, as the caller starts afresh;
* :meth:`WordPort.close` is idempotent; the peer then sees :class:`LinkLost`; any other
  call on a closed port raises :class:`PortError`.
* Foreign exceptions (``OSError``, ``serial.SerialException``) never leave a port: they
  become :class:`PortError` or :class:`LinkLost`, raised ``from`` the original.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from types import TracebackType

from bridge.acrnema.physical import WordBuffer
from bridge.engine import MAX_RECV_WORDS
from bridge.errors import LinkLost, PortError, PortUnavailableError

__all__ = ["MAX_RECV_WORDS", "LinkLost", "PortError", "PortUnavailableError", "WordPort"]


def __getattr__(name: str) -> type[LinkLost]:
    """``LinkDown``, the old name of :class:`LinkLost`, with a :class:`DeprecationWarning`.

    ``LinkDown`` is the link stack's event (:class:`bridge.acrnema.stack.LinkDown`); the
    port's exception was renamed so that no name means two things.
    """
    if name == "LinkDown":
        warnings.warn(
            f"{__name__}.LinkDown is deprecated: the exception is bridge.errors.LinkLost "
            "(LinkDown is the link stack's event)",
            DeprecationWarning,
            stacklevel=2,
        )
        return LinkLost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class WordPort(ABC):
    """One end of the link, as the stack sees it."""

    url: str = ""

    @abstractmethod
    def send(self, buffer: WordBuffer) -> None:
        """Put words (with their parity line) on the wire."""

    @abstractmethod
    def recv(self, timeout: float) -> WordBuffer:
        """Words that arrived, waiting at most ``timeout`` seconds for the first."""

    @abstractmethod
    def set_ready(self, ready: bool) -> None:
        """Assert or drop this side's READY line."""

    @property
    @abstractmethod
    def peer_ready(self) -> bool:
        """Whether the other side's READY line is asserted, as last seen."""

    @abstractmethod
    def wait_peer(self, timeout: float) -> bool:
        """Wait until the other side is READY; False when ``timeout`` passed first."""

    @abstractmethod
    def close(self) -> None:
        """Release the device or connection; idempotent."""

    def __enter__(self) -> WordPort:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

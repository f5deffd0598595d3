"""systemd's service notifications (sd_notify(3)), spoken by the bridge itself.

A unit of ``Type=notify`` (packaging/systemd/acrnema-bridge.service) starts the service
with ``$NOTIFY_SOCKET``: a unix datagram socket, named by a path or, with a leading ``@``,
by a name in the abstract namespace. Each datagram is newline-separated assignments:

* ``READY=1``: started; the manager orders the units that wait for it only now;
* ``STATUS=...``: one line for ``systemctl status``;
* ``WATCHDOG=1``: alive; with ``WatchdogSec=`` the manager sets ``$WATCHDOG_USEC`` (and
  ``$WATCHDOG_PID``: the process meant) and kills a service that is silent that long;
* ``STOPPING=1``: shutting down.

The protocol is a dozen lines, so no library is needed (libsystemd's own is C; the Python
bindings would be a compiled dependency for one ``sendto``). :class:`Notifier` sends;
:class:`Watchdog` is the thread that pings at half of ``$WATCHDOG_USEC`` *only while the
service says it is healthy*: a service whose link loop hangs or whose forwarder failed
goes quiet, and the manager restarts it. Without ``$NOTIFY_SOCKET`` (a terminal, a test)
everything here does nothing. A notification that cannot be sent is logged, never raised:
the manager's socket must not be able to stop the link.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "Watchdog", "encode", "watchdog_period"]

log = logging.getLogger(__name__)

_TICK_S = 0.2
"""How often the watchdog thread looks at the stop event and the service's health."""


def encode(**fields: object) -> bytes:
    """One datagram: ``KEY=value`` lines, e.g. ``encode(READY=1, STATUS="serving")``.

    A value is one line (its newlines become spaces), as the protocol has no quoting."""
    lines = [f"{key}={' '.join(str(value).splitlines())}" for key, value in fields.items()]
    return "\n".join(lines).encode("utf-8", "replace")


def watchdog_period(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds of the manager's watchdog, from ``$WATCHDOG_USEC``; None when there is none,
    or when ``$WATCHDOG_PID`` names another process (as ``sd_watchdog_enabled`` reads it)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6


class Notifier:
    """Sends notifications to ``address`` (``$NOTIFY_SOCKET`` by default); without one,
    :meth:`notify` does nothing and returns False."""

    def __init__(self, address: str | None, *, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog
        """The manager's watchdog period in seconds, or None."""
        self._target: str | bytes | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._complained = False
        if address and address[0] in "/@":
            # an abstract name is written with '@' and sent with a leading NUL
            self._target = b"\0" + address[1:].encode() if address[0] == "@" else address
        elif address:
            log.warning("NOTIFY_SOCKET %r is not a unix socket path or @name: not used", address)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier the service manager asked for (``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC``)."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog=watchdog_period(env))

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to notify."""
        return self._target is not None

    def notify(self, **fields: object) -> bool:
        """Send one datagram of ``fields`` (see :func:`encode`); whether it was sent.

        A failure (the manager gone, its socket full) is a WARNING once, then DEBUG."""
        if self._target is None:
            return False
        data = encode(**fields)
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._socket.settimeout(1.0)  # the manager reads at once; never hang here
                self._socket.sendto(data, self._target)
            except OSError as exc:
                level = logging.DEBUG if self._complained else logging.WARNING
                self._complained = True
                log.log(level, "cannot notify the service manager at %s: %s", self.address, exc)
                return False
        log.debug("notified the service manager: %r", data)
        return True

    def close(self) -> None:
        """Close the socket (a later :meth:`notify` opens a new one)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class Watchdog:
    """The service's side of ``Type=notify``: READY, STATUS, WATCHDOG pings, STOPPING.

    ``problem()`` says why the service is not doing its job (a worker down, the link loop
    stuck), or None when it is healthy. A thread (started here when the notifier is
    enabled) pings every half watchdog period while ``problem()`` is None; when it is not,
    the thread sends ``STATUS=unhealthy: ...`` once and pings no more until the service is
    healthy again, so the manager kills and restarts a service that stays unhealthy for
    ``WatchdogSec``. Once ``stop`` is set (a signal, or the service stopping itself) it
    sends ``STOPPING=1`` with the reason and ends. :meth:`close` ends it in any case.
    """

    def __init__(
        self,
        notifier: Notifier,
        stop: threading.Event,
        problem: Callable[[], str | None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.stop = stop
        self.problem = problem
        self.clock = clock
        self._closed = threading.Event()
        self._stopping_sent = False
        self._status = "starting"
        self._thread: threading.Thread | None = None
        if notifier.enabled:
            self._thread = threading.Thread(target=self._run, name="sd-notify", daemon=True)
            self._thread.start()

    def ready(self, status: str) -> None:
        """Tell the manager the service is up (call once the link port is open and the
        spool recovered); ``status`` is the line ``systemctl status`` shows."""
        self._status = status
        self.notifier.notify(READY=1, STATUS=status)

    def close(self) -> None:
        """End the thread; send ``STOPPING=1`` if it was not sent yet."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._send_stopping()

    def _send_stopping(self) -> None:
        if self._stopping_sent:
            return
        self._stopping_sent = True
        why = self._problem()
        self.notifier.notify(STOPPING=1, STATUS="stopping" + (f": {why}" if why else ""))

    def _problem(self) -> str | None:
        try:
            return self.problem()
        except Exception as exc:  # a health check that fails is itself a problem
            log.exception("the health check failed")
            return f"health check failed: {type(exc).__name__}: {exc}"

    def _run(self) -> None:
        period = self.notifier.watchdog
        interval = None if period is None else period / 2
        tick = _TICK_S if interval is None else min(_TICK_S, interval / 4)
        next_ping = self.clock()
        reported: str | None = None
        while not self._closed.is_set():
            if self.stop.is_set():
                self._send_stopping()
                return
            now = self.clock()
            if interval is not None and now >= next_ping:
                why = self._problem()
                if why is None:
                    if reported is not None:
                        log.warning("healthy again: watchdog pings resume")
                        self.notifier.notify(WATCHDOG=1, STATUS=self._status)
                    else:
                        self.notifier.notify(WATCHDOG=1)
                    next_ping = now + interval
                elif why != reported:
                    log.error("unhealthy: %s; the watchdog is no longer pinged", why)
                    self.notifier.notify(STATUS=f"unhealthy: {why}")
                reported = why
            self.stop.wait(tick)

"""Fault injection for any port: flipped bits, lost words, a stall, a disconnect.

A fault spec is a comma-separated list of ``NAME=VALUE`` items (docs/ports.md), for
example ``flip=1e-4,drop=1e-3,stall=2,at=4096,disconnect=50000,seed=7``:

``flip=RATE``
    each word, in both directions, gets exactly one bit flipped with probability RATE;
    the bit is chosen uniformly among the 17 lines (16 data bits and the parity bit).
``drop=RATE``
    each word, in both directions, is lost with probability RATE.
``stall=SECONDS``
    once ``at`` words have passed (both directions together), the port neither
    delivers nor accepts words for SECONDS: words in both directions are discarded, as
    if the far side had stopped answering. It happens once.
``at=WORDS``
    when the stall starts (default 4096).
``disconnect=WORDS``
    once WORDS words have passed (both directions together) the link breaks, once: the
    wrapped port drops READY (``set_ready(False)``), the rest of the buffer in hand is
    lost, and :meth:`FaultyPort.send` and :meth:`FaultyPort.recv` raise
    :class:`~bridge.ports.base.LinkLost` for ``unplug`` seconds; then READY is
    asserted again (at the next call after that time).
``unplug=SECONDS``
    how long the link stays broken after ``disconnect`` (default 0.5).
``seed=N``
    the random generator's seed (each direction draws from its own stream, so the
    faults in one direction do not depend on how calls interleave); without it a seed
    is drawn and logged at INFO, and kept in ``stats["seed"]`` to replay a run.

Flips come first, then drops; every count is per word that reached the fault layer
("passed"), including the words a stall discards. Everything is done on whole buffers
with numpy. :class:`FaultyPort` wraps any port; :func:`hook` gives the same flips,
drops and stall as a ``loop://`` hook (a hook cannot drop READY, so no disconnect).

``faults+URL?flip=1e-4&seed=3`` (:func:`open_faults`, a prefix of
:func:`bridge.ports.open_port`) opens any port as a :class:`FaultyPort`: the query items
named as above make the spec, the other items stay with the inner URL, so it composes
with ``spy+`` and ``box+`` on either side. ``emulate --faults SPEC`` opens the same URL
(:func:`faults_url`).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np

from bridge.acrnema.physical import WordBuffer
from bridge.errors import FaultSpecError, PortError
from bridge.ports._buffers import as_buffer, empty_buffer
from bridge.ports.base import LinkLost, WordPort

__all__ = [
    "FaultHook",
    "FaultInjector",
    "FaultSpec",
    "FaultSpecError",
    "FaultyPort",
    "faults_url",
    "hook",
    "open_faults",
    "split_faults_url",
]

log = logging.getLogger(__name__)

_BITS = 17  # 16 data lines and the parity line
_DIRECTIONS = ("out", "in")


@dataclass(frozen=True)
class FaultSpec:
    """What to break, parsed from ``flip=1e-4,drop=1e-3,...`` (module docstring)."""

    flip: float = 0.0
    drop: float = 0.0
    stall: float = 0.0
    at: int = 4096
    disconnect: int | None = None
    unplug: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("flip", "drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultSpecError(f"fault {name}={value}: a rate is between 0 and 1")
        for name in ("stall", "unplug"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise FaultSpecError(f"fault {name}={value}: seconds, 0 or more")
        for name in ("at", "disconnect", "seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FaultSpecError(f"fault {name}={value}: 0 or more")

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """The spec in ``text``; an empty text is no fault at all."""
        kinds = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not value:
                raise FaultSpecError(f"fault {item!r}: write NAME=VALUE")
            if name not in kinds:
                known = ", ".join(kinds)
                raise FaultSpecError(f"fault {item!r}: unknown name {name!r} (known: {known})")
            if name in values:
                raise FaultSpecError(f"fault {item!r}: {name} given twice")
            integer = name in ("at", "disconnect", "seed")
            try:
                values[name] = _integer(value) if integer else float(value)
            except ValueError:
                what = "a whole number" if integer else "a number"
                raise FaultSpecError(f"fault {item!r}: {value!r} is not {what}") from None
        return cls(**values)

    def __str__(self) -> str:
        items = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != f.default
        ]
        return ",".join(items)

    @property
    def active(self) -> bool:
        """Whether the spec breaks anything at all."""
        return bool(self.flip or self.drop or self.stall or self.disconnect is not None)


def _integer(text: str) -> int:
    """A whole number, also written as ``5e4`` (but not ``2.5``)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


class FaultInjector:
    """Flips, drops and the stall of a spec, applied to buffers; thread-safe.

    ``stats`` counts ``words`` (passed), ``flips``, ``drops``, ``stalls``,
    ``stalled_words`` (discarded by the stall) and ``disconnects`` (set by
    :class:`FaultyPort`); ``seed`` is the seed in use.
    """

    def __init__(self, spec: FaultSpec, clock: Any = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        seed = spec.seed
        if seed is None:
            seed = secrets.randbits(32)
            if spec.flip or spec.drop:
                log.info("fault injection: seed=%d (add it to the spec to replay)", seed)
        children = np.random.SeedSequence(seed).spawn(len(_DIRECTIONS))
        self._rng = {
            d: np.random.default_rng(s) for d, s in zip(_DIRECTIONS, children, strict=True)
        }
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {
            "words": 0,
            "flips": 0,
            "drops": 0,
            "stalls": 0,
            "stalled_words": 0,
            "disconnects": 0,
            "seed": seed,
        }
        self._stall_until: float | None = None
        self._stall_done = spec.stall <= 0

    def stalled(self) -> bool:
        """Whether the stall is on now."""
        with self._lock:
            return self._stalled_locked()

    def _stalled_locked(self) -> bool:
        if self._stall_until is None:
            return False
        if self._clock() < self._stall_until:
            return True
        self._stall_until = None
        log.info("fault injection: the stall is over")
        return False

    def apply(self, buffer: WordBuffer, direction: str, limit: int | None = None) -> WordBuffer:
        """``buffer`` as it comes out of the faulty link going ``direction``.

        ``limit``: pass at most this many words (the caller breaks the link there);
        the rest are dropped uncounted.
        """
        buffer = as_buffer(buffer)
        if limit is not None and len(buffer.words) > limit:
            buffer = WordBuffer(buffer.words[:limit], buffer.parity[:limit])
        with self._lock:
            count = len(buffer.words)
            if not count:
                return buffer
            self.stats["words"] += count
            if self._stalled_locked():
                self.stats["stalled_words"] += count
                return empty_buffer()
            if not self._stall_done:
                passed_before = self.stats["words"] - count
                start = max(0, self.spec.at - passed_before)
                if start < count:
                    self._stall_done = True
                    self._stall_until = self._clock() + self.spec.stall
                    self.stats["stalls"] += 1
                    self.stats["stalled_words"] += count - start
                    log.info("fault injection: stalling for %g s", self.spec.stall)
                    buffer = WordBuffer(buffer.words[:start], buffer.parity[:start])
            rng = self._rng[_direction_key(direction)]
            return self._flip_and_drop(buffer, rng)

    def _flip_and_drop(self, buffer: WordBuffer, rng: np.random.Generator) -> WordBuffer:
        count = len(buffer.words)
        words, parity = buffer.words, buffer.parity
        if self.spec.flip and count:
            where = np.flatnonzero(rng.random(count) < self.spec.flip)
            if len(where):
                bits = rng.integers(0, _BITS, len(where))
                words, parity = words.copy(), parity.copy()
                data = bits < 16
                words[where[data]] ^= (np.uint16(1) << bits[data].astype(np.uint16)).astype(
                    np.uint16
                )
                parity[where[~data]] ^= np.uint8(1)
                self.stats["flips"] += len(where)
        if self.spec.drop and count:
            keep = rng.random(count) >= self.spec.drop
            dropped = count - int(np.count_nonzero(keep))
            if dropped:
                words, parity = words[keep], parity[keep]
                self.stats["drops"] += dropped
        return WordBuffer(words, parity)


def _direction_key(direction: str) -> str:
    """``out``/``in`` for a port; a loop's ``a->b`` / ``b->a`` map onto the two streams."""
    if direction in ("out", "a->b"):
        return "out"
    if direction in ("in", "b->a"):
        return "in"
    raise ValueError(f"direction {direction!r}")


class FaultHook:
    """A ``loop://`` hook: ``hook(buffer, direction) -> buffer``; ``injector.stats``."""

    def __init__(self, spec: FaultSpec) -> None:
        if spec.disconnect is not None:
            raise FaultSpecError("fault disconnect: needs a FaultyPort (a hook cannot drop READY)")
        self.injector = FaultInjector(spec)

    def __call__(self, buffer: WordBuffer, direction: str) -> WordBuffer:
        return self.injector.apply(buffer, direction)


def hook(spec: FaultSpec | str) -> FaultHook:
    """A ``loop://`` hook applying the spec's flips, drops and stall."""
    return FaultHook(FaultSpec.parse(spec) if isinstance(spec, str) else spec)


class FaultyPort(WordPort):
    """``port`` with the faults of ``spec`` on everything it sends and receives."""

    def __init__(self, port: WordPort, spec: FaultSpec | str) -> None:
        if isinstance(spec, str):
            spec = FaultSpec.parse(spec)
        self.port = port
        self.spec = spec
        self.url = port.url
        self.injector = FaultInjector(spec)
        self.stats = self.injector.stats
        self._lock = threading.Lock()
        self._unplugged_until: float | None = None
        self._disconnect_done = spec.disconnect is None

    @property
    def peer_ready(self) -> bool:
        return self._unplugged_until is None and self.port.peer_ready

    def send(self, buffer: WordBuffer) -> None:
        self._check_unplugged()
        with self._lock:  # one thread at a time takes the last words before a disconnect
            limit = self._room()
            out = self.injector.apply(buffer, "out", limit)
        if len(out.words):
            self.port.send(out)
        if limit is not None and (len(buffer.words) > limit or limit == 0):
            self._break()
            raise LinkLost(f"{self.url}: fault injection: disconnected")

    def recv(self, timeout: float) -> WordBuffer:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._check_unplugged()
            buffer = self.port.recv(max(0.0, deadline - time.monotonic()))
            with self._lock:
                limit = self._room()
                got = self.injector.apply(buffer, "in", limit)
            if limit is not None and (len(buffer.words) > limit or limit == 0):
                self._break()
                if not len(got.words):
                    raise LinkLost(f"{self.url}: fault injection: disconnected")
            if len(got.words) or time.monotonic() >= deadline:
                return got

    def set_ready(self, ready: bool) -> None:
        self.port.set_ready(ready)

    def wait_peer(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            until = self._unplugged_until
        if until is not None:
            time.sleep(max(0.0, min(until, deadline) - time.monotonic()))
            try:
                self._check_unplugged()
            except LinkLost:
                return False
        return self.port.wait_peer(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.port.close()

    def _room(self) -> int | None:
        """Words that may pass before the disconnect; None when it is done or not set."""
        if self._disconnect_done or self.spec.disconnect is None:
            return None
        return max(0, self.spec.disconnect - self.injector.stats["words"])

    def _break(self) -> None:
        with self._lock:
            if self._disconnect_done:
                return
            self._disconnect_done = True
            self._unplugged_until = time.monotonic() + self.spec.unplug
            self.stats["disconnects"] += 1
        log.info("fault injection: link broken for %g s", self.spec.unplug)
        self.port.set_ready(False)

    def _check_unplugged(self) -> None:
        with self._lock:
            until = self._unplugged_until
            if until is None:
                return
            if time.monotonic() < until:
                raise LinkLost(f"{self.url}: fault injection: unplugged")
            self._unplugged_until = None
        log.info("fault injection: link restored")
        self.port.set_ready(True)


def split_faults_url(url: str) -> tuple[str, FaultSpec]:
    """``faults+URL?flip=...&seed=...`` -> (URL with its own query items, the spec).

    The query items named as a spec's items (flip, drop, stall, at, disconnect, unplug,
    seed) are the spec; the others belong to the inner URL and stay with it.
    """
    if not url.startswith("faults+"):
        raise FaultSpecError(f"{url}: not a faults+ URL")
    base, sep, query = url[len("faults+") :].partition("?")
    names = {f.name for f in fields(FaultSpec)}
    items: list[str] = []
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in names:
            items.append(f"{name}={value}")
        else:
            kept.append((name, value))
    if sep and kept:
        base += "?" + urlencode(kept)
    if not base or "://" not in base:
        raise FaultSpecError(f"{url}: give the port to break, as in faults+loop://demo?flip=1e-4")
    try:
        spec = FaultSpec.parse(",".join(items))
    except FaultSpecError as exc:
        raise FaultSpecError(f"{url}: {exc}") from None
    return base, spec


def faults_url(url: str, spec: str) -> str:
    """The ``faults+`` URL that breaks ``url`` as ``spec`` (``flip=1e-4,seed=7``) says.

    ``emulate --faults SPEC`` opens this URL, so the option and the prefix are one path
    to one port. ``spec`` is checked first (a :class:`FaultSpecError` names its item);
    its items join the URL's query, after the items already there. The inverse of
    :func:`split_faults_url`.
    """
    FaultSpec.parse(spec)
    items = []
    for raw in spec.split(","):
        name, _, value = raw.partition("=")
        if name.strip():
            items.append((name.strip(), value.strip()))
    query = urlencode(items)
    if not query:
        return "faults+" + url
    return f"faults+{url}{'&' if '?' in url else '?'}{query}"


def open_faults(url: str, opener: Callable[[str], WordPort]) -> FaultyPort:
    """Open ``faults+URL``: the inner port through ``opener``, with the URL's faults."""
    inner_url, spec = split_faults_url(url)
    try:
        port = opener(inner_url)
    except PortError as exc:
        if "option" not in str(exc):
            raise
        items = ", ".join(f.name for f in fields(FaultSpec))
        raise PortError(f"{exc}; faults+ items: {items}") from exc
    try:
        faulty = FaultyPort(port, spec)
    except BaseException:
        port.close()
        raise
    faulty.url = url
    return faulty

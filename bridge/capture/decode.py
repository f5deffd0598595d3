"""Logic-analyser captures in: probes -> lines -> words -> frames -> messages -> DICOM.

The pipeline of ``acrnema-bridge capture decode`` (docs/capture.md), each step its own
function so that other tools (profile fitting, a sigrok decoder) can stop at any:

* :func:`open_capture`: a VCD (:class:`~bridge.capture.vcd.VcdReader`) or a sigrok
  session (:class:`~bridge.capture.sigrok.SrReader`), by content;
* :func:`line_changes`: capture + channel map + profile -> :class:`~bridge.capture.bus.Changes`
  in line space (bit i = ``physical.bus_lines[i]`` asserted), chunk by chunk;
* :class:`~bridge.capture.bus.WordRecovery`: changes -> words with times, sides, parity;
* :class:`~bridge.capture.observe.Observer`: words -> frames, packets, messages;
* :func:`decode_capture`: all of it, every store request's data set converted to DICOM
  (:func:`bridge.dicom.core.convert`, as the service converts what arrives) and written
  to a folder, and a report (a dict, written as JSON by the CLI).

Memory is bounded by the readers' block size: nothing holds the whole capture.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bridge.capture.bus import Changes, Recovered, WordRecovery
from bridge.capture.channels import ChannelMap, reference_map, to_lines
from bridge.capture.observe import Observed, Observer
from bridge.capture.sigrok import SrReader
from bridge.capture.vcd import VcdReader
from bridge.errors import BridgeError, CaptureError
from bridge.profile import REFERENCE, Profile

__all__ = [
    "DecodeResult",
    "decode_capture",
    "line_changes",
    "open_capture",
    "read_lines",
    "read_words",
    "words_of",
]

MAX_LISTED = 10000  # sync losses and messages listed in the report, at most


def open_capture(path: str | Path) -> VcdReader | SrReader:
    """The reader for ``path``: a sigrok session (a zip archive) or a VCD (text)."""
    try:
        with open(path, "rb") as fp:
            magic = fp.read(4)
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if magic.startswith(b"PK"):
        return SrReader(path)
    return VcdReader(path)


def line_changes(
    reader: VcdReader | SrReader, profile: Profile, cmap: ChannelMap | None = None
) -> Iterator[Changes]:
    """The capture's changes in line space (asserted states, bit i = bus line i)."""
    ph = profile.physical
    cmap = cmap or reference_map(ph)
    for chunk in reader.changes(cmap.probes_for(ph)):
        yield to_lines(chunk, ph, cmap)


def words_of(
    reader: VcdReader | SrReader,
    profile: Profile,
    cmap: ChannelMap | None = None,
    glitch_ns: int = 0,
) -> Iterator[Recovered]:
    """The words of a capture, chunk by chunk (see :class:`WordRecovery`)."""
    recovery = WordRecovery(profile.physical, glitch_ns)
    for chunk in line_changes(reader, profile, cmap):
        yield recovery.feed(chunk)
    yield recovery.finish()


def read_lines(
    path: str | Path, profile: Profile = REFERENCE, cmap: ChannelMap | None = None
) -> Iterator[Changes]:
    """The capture file ``path`` as line changes, chunk by chunk (the file is closed when
    the iterator is exhausted or closed)."""
    with open_capture(path) as reader:
        yield from line_changes(reader, profile, cmap)


def read_words(
    path: str | Path,
    profile: Profile = REFERENCE,
    cmap: ChannelMap | None = None,
    glitch_ns: int = 0,
) -> Iterator[Recovered]:
    """The capture file ``path`` as words with their times, sides and parity."""
    with open_capture(path) as reader:
        yield from words_of(reader, profile, cmap, glitch_ns)


@dataclass
class DecodeResult:
    """What :func:`decode_capture` found: the report and the images written."""

    report: dict[str, Any]
    images: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the exit status is 1


def _write_images(
    message_no: int, item: Observed, out: Path, source: str, result: DecodeResult
) -> list[str]:
    from bridge.dicom.core import convert
    from bridge.spool.objects import dataset_bytes

    assert item.message is not None
    files: list[str] = []
    try:
        converted = convert(item.message.data, source=f"{source} message {message_no}")
    except BridgeError as exc:
        result.problems.append(f"{source}: message {message_no} at {item.time:.0f} ns: {exc}")
        return files
    for ds in converted.datasets:
        path = out / f"IMG{len(result.images) + 1:05d}.dcm"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(dataset_bytes(ds))
        tmp.replace(path)
        result.images.append(path)
        files.append(path.name)
    return files


def decode_capture(
    path: str | Path,
    out: str | Path,
    profile: Profile = REFERENCE,
    cmap: ChannelMap | None = None,
    glitch_ns: int = 0,
) -> DecodeResult:
    """Decode the capture ``path``; images into ``out``; the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = str(path)
    observer = Observer(profile, ("A", "B"))
    recovery = WordRecovery(profile.physical, glitch_ns)
    result = DecodeResult({})
    messages: list[dict[str, Any]] = []
    losses: list[dict[str, Any]] = []
    loss_count = 0
    perr = 0
    message_no = 0
    store = profile.application.commands["store"][0]
    with open_capture(path) as reader:
        cmap = cmap or reference_map(profile.physical)
        chunks = line_changes(reader, profile, cmap)
        final = False
        while not final:
            chunk = next(chunks, None)
            if chunk is None:
                rec, final = recovery.finish(), True
            else:
                rec = recovery.feed(chunk)
            for loss in rec.losses:
                loss_count += 1
                if len(losses) < MAX_LISTED:
                    losses.append({"time_ns": loss.time_ns, "reason": loss.reason})
            perr += int(rec.perr.sum())
            for item in _observe(observer, rec):
                if item.layer == "sync":
                    loss_count += 1
                    if len(losses) < MAX_LISTED:
                        losses.append(
                            {"time_ns": int(item.time), "reason": f"{item.direction}: {item.text}"}
                        )
                    continue
                if item.layer != "message":
                    continue
                message_no += 1
                entry: dict[str, Any] = {
                    "time_ns": int(item.time),
                    "direction": item.direction,
                    "text": item.text,
                }
                m = item.message
                if m is not None and m.command.field == store and m.data:
                    entry["images"] = _write_images(message_no, item, out, source, result)
                if len(messages) < MAX_LISTED:
                    messages.append(entry)
    tallies = {d: observer.tally(d) for d in ("A", "B")}
    if recovery.words == 0:
        result.problems.append(f"{source}: no words found (is the channel map right?)")
    for d in ("A", "B"):
        st = observer._dirs[d]
        if st.transport.receiving or st.decoder.pending_words:
            result.problems.append(
                f"{source}: the capture ends inside a message from side {d} "
                f"(at {recovery.last_ns} ns): truncated?"
            )
    span = (recovery.last_ns or 0) - (recovery.first_ns or 0)
    result.report = {
        "capture": source,
        "profile": profile.name,
        "handshake_mode": profile.physical.handshake,
        "words": {
            "total": recovery.words,
            **{d: t.words for d, t in tallies.items()},
            "bad_parity": sum(t.bad_parity for t in tallies.values()),
            "perr": perr,
        },
        "frames": {
            d: {
                "good": t.frames_good,
                "damaged": t.frames_damaged,
                "retransmitted": t.frames_retransmitted,
                "ack": t.acks,
                "nak": t.naks,
            }
            for d, t in tallies.items()
        },
        "packets": {d: t.packets for d, t in tallies.items()},
        "messages": messages,
        "message_count": message_no,
        "images": [p.name for p in result.images],
        "handshake_phases_ns": recovery.phase_stats(),
        "word_rate": {
            "first_ns": recovery.first_ns,
            "last_ns": recovery.last_ns,
            "words_per_second": (recovery.words - 1) / (span / 1e9) if span > 0 else None,
        },
        "sync_lost": losses,
        "sync_lost_count": loss_count,
        "problems": result.problems,
    }
    return result


def _observe(observer: Observer, rec: Recovered) -> Iterator[Observed]:
    """Feed recovered words to the observer in runs of one side, in time order."""
    n = len(rec.words)
    if not n:
        return
    cuts = np.flatnonzero(rec.sides[1:] != rec.sides[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    for lo, hi in itertools.pairwise(bounds):
        side = "A" if rec.sides[lo] == 0 else "B"
        yield from observer.feed(side, rec.words[lo:hi], rec.parity[lo:hi], rec.times[lo:hi])

"""Benchmark: the interface-box protocol's throughput and the host's CPU per MB.

Usage: ``.venv/bin/python bench/box.py [--mb 8] [--cpus 0] [--box-cpus 1] [--paced-s 4]``

The goal (the interface-box issue): at least 1 MB/s of words sustained, the USB
full-speed budget (docs/box-protocol.md, section 8), using under half of one core on the
host. MB is 10^6 bytes of words (2 bytes a word). The host side is always the real one:
:class:`bridge.ports.box.BoxPort` (``send``/``recv``, credits, frames, positions). The box
and the far end of the line (a source or a sink playing the scanner, on ``loop://``) are:

a. ``loop``: everything in this process: BoxPort over an in-process byte pipe
   (:func:`bridge.ports.bytestream.pipe_pair`, no system calls), the Python box
   (:class:`bridge.testing.box.EmulatedBox`) in a thread, the far end in another. The
   codec and the protocol only; host CPU is the host thread's own (``time.thread_time``);
b. ``pty``: the Python box in a child process on a pty, the host opening
   ``box+serial://PTY?duplex=1`` through pyserial, as with a USB CDC device;
c. ``firmware``: the same with the firmware's C core in the child
   (:class:`bridge.testing.box.FirmwareBox`, ``firmware/build/libboxcore.so``; built
   with ``make -C firmware lib`` if missing).

In b and c the host's CPU is this process's (``time.process_time``), the box's is the
child's, reported apart. This process is pinned to ``--cpus``, the child to
``--box-cpus`` (``sched_setaffinity``). Each setup runs two directions at full speed:
``in`` (box to host, the direction of the images: the far end sends N words at once and
the box pulls them as the host's credit allows) and ``out`` (host to box: the host sends N
words, timed until the far end has them all), then, for b and c, ``in`` paced at exactly
1 MB/s for ``--paced-s`` seconds, which gives the host's share of a core at the goal rate
directly. Words are 12-bit pixel values with odd parity; every run checks the words
(count and sum) that arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.acrnema.physical import WordBuffer, parity_bits
from bridge.ports import open_port
from bridge.ports.base import WordPort
from bridge.ports.box import BoxPort
from bridge.ports.bytestream import pipe_pair
from bridge.ports.loop import loop_pair
from bridge.testing.box import EmulatedBox, FirmwareBox

GOAL = 1e6  # bytes of words per second: the USB full-speed budget
CHUNK = 1 << 16  # words per send() on the host
ROOT = Path(__file__).resolve().parent.parent


def make_words(count: int, seed: int) -> WordBuffer:
    values = np.random.default_rng(seed).integers(0, 1 << 12, count).astype(np.uint16)
    return WordBuffer(values, parity_bits(values, "odd"))


def checksum(buffer: WordBuffer) -> int:
    return int(buffer.words.astype(np.uint64).sum()) & 0xFFFF_FFFF


# --- the far end of the line (in the child, or a thread for "loop") -------------------


class FarEnd:
    """Plays the scanner's end of the line: a source (``in``) or a sink (``out``)."""

    def __init__(self, peer: WordPort) -> None:
        self.peer = peer
        self._words: dict[tuple[int, int], WordBuffer] = {}

    def prepare(self, count: int, seed: int) -> None:
        """Make the words of a later :meth:`source` now (outside the timed part)."""
        self._words[(count, seed)] = make_words(count, seed)

    def source(self, count: int, rate: float, seed: int) -> None:
        words = self._words.pop((count, seed), None) or make_words(count, seed)
        if not self.peer.wait_peer(30):
            raise SystemExit("bench: the box never raised READY")
        start = time.perf_counter()
        step = 8192 if rate else 1 << 20
        for at in range(0, count, step):
            self.peer.send(WordBuffer(words.words[at : at + step], words.parity[at : at + step]))
            if rate:  # paced: 2 bytes a word at `rate` bytes per second
                ahead = start + 2 * (at + step) / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)

    def sink(self, count: int) -> tuple[int, int]:
        got, total = 0, 0
        if not self.peer.wait_peer(30):
            raise SystemExit("bench: the box never raised READY")
        while got < count:
            buffer = self.peer.recv(1.0)
            got += len(buffer.words)
            total = (total + checksum(buffer)) & 0xFFFF_FFFF
        return got, total


def child(kind: str) -> int:
    """The box and the far end in their own process; commands on stdin, answers on stdout."""
    line, peer = loop_pair()
    line.set_ready(False)
    box = FirmwareBox(line) if kind == "firmware" else EmulatedBox(line)
    box.start()
    far = FarEnd(peer)
    print(json.dumps({"device": box.device}), flush=True)
    try:
        for text in sys.stdin:
            command, *args = text.split()
            if command == "prepare":
                far.prepare(int(args[0]), int(args[1]))
                print("ready", flush=True)
            elif command == "in":
                far.source(int(args[0]), float(args[1]), int(args[2]))
                print("sent", flush=True)
            elif command == "out":
                got, total = far.sink(int(args[0]))
                print(f"got {got} {total}", flush=True)
            elif command == "cpu":
                print(time.process_time(), flush=True)
            else:
                break
    finally:
        box.stop()
        line.close()
        peer.close()
    return 0 if box.error is None else 1


# --- the host side --------------------------------------------------------------------


@dataclass
class Result:
    setup: str
    direction: str
    mb: float
    wall: float
    host_cpu: float
    box_cpu: float | None

    @property
    def rate(self) -> float:
        return self.mb * 1e6 / self.wall

    @property
    def cpu_per_mb(self) -> float:
        return self.host_cpu / self.mb


def receive_all(port: BoxPort, count: int, seed: int) -> tuple[int, int]:
    """Receive ``count`` words; (count, checksum) to check after the clock stops."""
    got, total = 0, 0
    while got < count:
        buffer = port.recv(1.0)
        got += len(buffer.words)
        total = (total + checksum(buffer)) & 0xFFFF_FFFF
    return got, total


def check(received: tuple[int, int], count: int, seed: int) -> None:
    if received != (count, checksum(make_words(count, seed))):
        raise SystemExit(f"bench: {received[0]} words arrived, or not the ones sent")


def send_all(port: BoxPort, words: WordBuffer) -> None:
    for at in range(0, len(words.words), CHUNK):
        port.send(WordBuffer(words.words[at : at + CHUNK], words.parity[at : at + CHUNK]))


class Child:
    """The box in a child process (setups b and c)."""

    def __init__(self, kind: str, cpus: str) -> None:
        command = [sys.executable, __file__, "--child", kind, "--cpus", cpus]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        self.stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        self.device = json.loads(self.stdout.readline())["device"]

    def ask(self, command: str) -> str:
        self.stdin.write(command + "\n")
        self.stdin.flush()
        return self.stdout.readline().strip()

    def tell(self, command: str) -> None:
        self.stdin.write(command + "\n")
        self.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.tell("quit")
            self.process.wait(30)


def run_child(kind: str, words: int, paced_s: float, box_cpus: str) -> list[Result]:
    child = Child(kind, box_cpus)
    port = open_port(f"box+serial://{child.device}?duplex=1")
    assert isinstance(port, BoxPort)
    results = []
    try:
        if not port.wait_peer(10):
            raise SystemExit(f"bench: no link to the {kind} box")
        mb = 2 * words / 1e6
        data = make_words(words, 2)
        for direction in ("in", "out"):
            child.ask(f"prepare {words} 1")
            box0, cpu0, wall0 = float(child.ask("cpu")), time.process_time(), time.perf_counter()
            if direction == "in":
                child.tell(f"in {words} 0 1")
                received = receive_all(port, words, 1)
                if child.stdout.readline().strip() != "sent":
                    raise SystemExit("bench: the far end failed")
            else:
                child.tell(f"out {words}")
                send_all(port, data)
                if child.stdout.readline().split() != ["got", str(words), str(checksum(data))]:
                    raise SystemExit("bench: the far end got other words")
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            box_cpu = float(child.ask("cpu")) - box0
            if direction == "in":
                check(received, words, 1)
            results.append(Result(kind, direction, mb, wall, cpu, box_cpu))
        if paced_s > 0:
            count = int(GOAL * paced_s / 2)
            child.ask(f"prepare {count} 3")
            box0, cpu0, wall0 = float(child.ask("cpu")), time.process_time(), time.perf_counter()
            child.tell(f"in {count} {GOAL} 3")
            received = receive_all(port, count, 3)
            child.stdout.readline()
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            box_cpu = float(child.ask("cpu")) - box0
            check(received, count, 3)
            results.append(Result(kind, "in, 1 MB/s", 2 * count / 1e6, wall, cpu, box_cpu))
    finally:
        port.close()
        child.close()
    return results


def run_loop(words: int) -> list[Result]:
    host_end, box_end = pipe_pair(1 << 20)
    line, peer = loop_pair()
    line.set_ready(False)
    box = EmulatedBox(line, box_end).start()
    port = BoxPort("box+pipe://bench", host_end, duplex=True)
    far = FarEnd(peer)
    results = []
    try:
        if not port.wait_peer(10):
            raise SystemExit("bench: no link to the in-process box")
        mb = 2 * words / 1e6
        for direction in ("in", "out"):
            outcome: list[tuple[int, int]] = []
            far.prepare(words, 1)
            if direction == "in":
                worker = threading.Thread(target=far.source, args=(words, 0.0, 1))
            else:
                data = make_words(words, 2)
                worker = threading.Thread(target=lambda got=outcome: got.append(far.sink(words)))
            cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            worker.start()
            if direction == "in":
                received = receive_all(port, words, 1)
            else:
                send_all(port, data)
            worker.join()
            wall = time.perf_counter() - wall0
            host = time.thread_time() - thread0
            process = time.process_time() - cpu0
            if direction == "in":
                check(received, words, 1)
            if direction == "out" and outcome != [(words, checksum(data))]:
                raise SystemExit("bench: the far end got other words")
            results.append(Result("loop", direction, mb, wall, host, process - host))
    finally:
        port.close()
        box.stop()
        box_end.release()
        line.close()
        peer.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=8.0, help="MB of words a run (default 8)")
    parser.add_argument("--cpus", default="0", help="cores for the host side (default 0)")
    parser.add_argument("--box-cpus", default="1", help="cores for the box (default 1)")
    parser.add_argument("--paced-s", type=float, default=4.0, help="seconds at 1 MB/s")
    parser.add_argument("--setups", default="loop,pty,firmware")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.child:
        return child(args.child)
    words = int(args.mb * 1e6 / 2)
    setups = args.setups.split(",")
    if "firmware" in setups:
        subprocess.run(["make", "-s", "-C", str(ROOT / "firmware"), "lib"], check=True)
    print(
        f"box protocol benchmark: {args.mb:g} MB of words a run (12-bit values, odd parity); "
        f"host on core(s) {args.cpus}, box process on core(s) {args.box_cpus}"
    )
    results: list[Result] = []
    for setup in setups:
        if setup == "loop":
            results += run_loop(words)
        else:
            results += run_child(setup, words, args.paced_s, args.box_cpus)
    print(
        f"{'setup':9} {'direction':11} {'MB/s':>7} {'x 1 MB/s':>9} {'host CPU s/MB':>14} "
        f"{'host core share':>16} {'at 1 MB/s':>10} {'box CPU s/MB':>13}"
    )
    for r in results:
        share = r.host_cpu / r.wall
        box = "" if r.box_cpu is None else f"{r.box_cpu / r.mb:13.3f}"
        print(
            f"{r.setup:9} {r.direction:11} {r.rate / 1e6:7.2f} {r.rate / GOAL:9.2f} "
            f"{r.cpu_per_mb:14.3f} {share:16.2f} {r.cpu_per_mb * GOAL / 1e6:10.2f} {box}"
        )
    print(
        "host core share: host CPU / wall time of the run; at 1 MB/s: host CPU s/MB x 1 MB/s "
        "(the share of one core the host needs at the goal rate; the goal: under 0.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``convert --cluster tcp://HOST:PORT``: the same batch on a Dask distributed cluster.

The coordinator (the ``convert`` process) stays what it is with ``--jobs``: it walks the
inputs, keeps the report in input order, stops on a full disk or a signal, and writes the
report, the DICOMDIR and the previews. Only the conversion of each input moves: chunks of
a few inputs go to the cluster's workers as tasks, each task runs
:func:`bridge.batch.convert_file` on its inputs and returns their report entries. Inputs
and OUT must be on a file system every worker sees under the same paths; this is checked
on every worker before any work.

Why Dask distributed: a maintained scheduler that already does what a batch over many
machines needs (worker discovery, a task moved to another worker when its worker dies,
back-pressure), started with two commands (``dask scheduler``, ``dask worker``), and
nothing to install on the workers but this package.

Delivery of results: a task whose worker dies is run again on another worker by the
scheduler (its inputs are redone). Workers only write temporary files; the coordinator
gives outputs their final names when a result comes back (``_Claims`` in
:mod:`bridge.batch`), so a redone input is placed once, and what the dead worker had
written is removed at the end of the batch. A task whose workers keep dying (Dask's
``KilledWorker``, after its allowed failures) fails its inputs with the cause. Only a
bounded window of tasks is in flight, so a batch of a million inputs holds a few hundred
futures, not a million.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bridge.errors import ConfigError

__all__ = ["CLUSTER_CHUNK", "check_cluster_url", "run_on_cluster"]

log = logging.getLogger("bridge.dicom.batch")  # the batch's logger: one name to filter

CLUSTER_CHUNK = (8, 64)
"""Inputs per task, at least and at most. Tasks shrink as the batch goes (guided
scheduling, :func:`_chunks`): each takes half of what is left per worker thread, so the
first tasks are large and the last ones small (no worker waits long for another to finish
a large one). Every task costs a few milliseconds of the scheduler's, the command's and a
worker's time (measured: about 8 ms of CPU in all on a 2-core machine), taken from the
conversion when they share cores: 1,000 inputs on two threads go in 24 tasks (61 with an
eighth, 4 at least). At most 64, so a stopped batch or a lost worker redoes little."""
_SHARE = 2  # a task takes 1/_SHARE of what is left per worker thread
_WINDOW_PER_THREAD = 4  # tasks in flight per worker thread
_CONNECT_TIMEOUT_S = 10
_TRIM = "MALLOC_TRIM_THRESHOLD_"  # set by a nanny for its worker (docs/archival.md)

_URL = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def check_cluster_url(url: str) -> str:
    """``url`` when it names a scheduler (``tcp://HOST:PORT``, ``tls://...``); else ConfigError."""
    match = _URL.match(url)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise ConfigError(
            f"--cluster {url!r}: expected the Dask scheduler's address, tcp://HOST:PORT"
        )
    return url


def _check_worker(folder: str, dask_worker: Any = None) -> tuple[str, str, str]:
    """On a worker (Dask passes ``dask_worker``): (why ``folder`` is not there or not
    writable, or ""; the worker's name; its ``MALLOC_TRIM_THRESHOLD_``, or "")."""
    import os
    import socket
    import tempfile

    name = str(getattr(dask_worker, "name", "") or socket.gethostname())
    trim = os.environ.get(_TRIM, "")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-cluster-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{socket.gethostname()}: cannot write {folder}: {exc.strerror or exc}", name, trim
    return "", name, trim


def _say_allocator(facts: list[tuple[str, str, str]]) -> None:
    """Name the workers whose nanny set ``MALLOC_TRIM_THRESHOLD_``: with it every
    pixel-sized buffer is an mmap, and conversion costs about 20 % more CPU."""
    slowed = sorted(name for _, name, trim in facts if trim)
    if slowed:  # a WARNING: INFO is not shown by convert, and this costs a site real time
        log.warning(
            "%d of %d workers run with %s set (%s), which makes conversion about 20 %% "
            "slower; docs/archival.md, 'Worker settings', shows how to unset it",
            len(slowed),
            len(facts),
            _TRIM,
            ", ".join(slowed),
        )


def _convert_chunk(
    chunk: list[tuple[int, Path]], out: Path, options: Any, overwrite: bool, run: str
) -> list[tuple[int, Any]]:
    """On a worker: convert a chunk of inputs, one (index, ReportEntry) each."""
    from bridge.batch import convert_file

    return [(index, convert_file(path, out, options, overwrite, run)) for index, path in chunk]


def _chunks(inputs: list[Path], threads: int) -> Iterator[list[tuple[int, Path]]]:
    """The inputs in tasks, each path absolute: a worker's working folder is its own."""
    low, high = CLUSTER_CHUNK
    start = 0
    while start < len(inputs):
        size = max(low, min(high, (len(inputs) - start) // (threads * _SHARE)))
        end = min(start + size, len(inputs))
        yield [(i, inputs[i].absolute()) for i in range(start, end)]
        start = end


def run_on_cluster(
    url: str,
    inputs: list[Path],
    out: Path,
    options: Any,
    overwrite: bool,
    run: str,
    finish: Callable[[int, Any], bool],
    stopped: Callable[[], bool],
    failed_entry: Callable[[int, str], Any],
) -> None:
    """Convert ``inputs`` on the cluster at ``url``, calling ``finish`` per result.

    ``run`` names the batch on its temporary files (:func:`bridge.batch.convert_file`).
    ``finish(index, entry)`` returns False when the
    batch must stop (no space left); ``stopped()`` says a stop was requested. Either way
    the tasks not yet started are cancelled and their inputs stay unrecorded (``pending``
    in the report); tasks already running finish on their workers (their outputs are
    whole, and a re-run skips them).
    ``failed_entry(index, reason)`` makes the entry of an input whose task failed.
    Raises :class:`ConfigError` when the scheduler cannot be reached or a worker cannot
    write OUT: nothing is converted then.
    """
    import importlib

    dask: Any = importlib.import_module("distributed")  # typed loosely: keep mypy strict here

    try:
        client: Any = dask.Client(url, timeout=f"{_CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {url}: {exc}") from exc
    try:
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise ConfigError(f"the Dask scheduler at {url} has no workers")
        facts = list(client.run(_check_worker, str(out)).values())
        problems = [problem for problem, _, _ in facts if problem]
        if problems:
            raise ConfigError(
                f"OUT must be writable on every worker of {url}: {'; '.join(problems)}"
            )
        log.info("converting on %s: %d worker threads", url, threads)
        _say_allocator(facts)
        chunks = _chunks(inputs, threads)
        window = max(2, threads * _WINDOW_PER_THREAD)
        # results are fetched by the client's own thread as each task ends, not by one
        # blocking round trip per task from here
        pending: Any = dask.as_completed(loop=client.loop, with_results=True, raise_errors=False)
        held: dict[Any, list[tuple[int, Path]]] = {}

        def submit() -> bool:
            chunk = next(chunks, None)
            if chunk is None:
                return False
            future = client.submit(_convert_chunk, chunk, out, options, overwrite, run, pure=False)
            held[future] = chunk
            pending.add(future)
            return True

        while len(held) < window and submit():
            pass
        go_on = True
        for future, outcome in pending:
            chunk = held.pop(future)
            if not go_on or future.status == "cancelled":
                continue
            if future.status == "error":  # a task's failure fails its inputs, not the batch
                error = outcome[1]  # (type, exception, traceback)
                reason = f"{type(error).__name__}: {error}"
                results = [(i, failed_entry(i, reason)) for i, _ in chunk]
            else:
                results = outcome
            for index, entry in results:
                entry.source = str(inputs[index])  # as given, as --jobs reports it
                if not finish(index, entry):
                    go_on = False
            if go_on and stopped():
                go_on = False
            if go_on:
                submit()
            else:
                client.cancel(list(held))
    finally:
        client.close()

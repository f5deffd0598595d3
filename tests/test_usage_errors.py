"""Usage errors over the whole command line (issue 11, item 7), as an operator meets them.

Each case runs ``acrnema-bridge`` as a process, in an empty working folder, and checks
the same promises: exit status 2, one line on stderr naming the value (and the fix), no
traceback, no internals (``__init__()``, ``[Errno ...]``, ``File exists``), and nothing
created on disk: no spool, no output folder, no port opened first.

No case sends a DNS query: ``bad..host`` is not a host name (it has an empty label), so
it is refused before any name server is asked; a name that a name server says does not
exist is checked in-process, with the lookup answered locally.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import peers
import pytest

from bridge.cli import main
from bridge.errors import PortUnavailableError, PortURLError
from bridge.ports.loop import active_names
from bridge.ports.registry import BUILTIN, check_url

LEAKS = ("Traceback", "__init__()", "[Errno", "File exists", "positional argument")

# argv (with {tmp}: the test's folder, holding in.dcm, afile, bad.toml), what stderr names
CASES: list[tuple[str, list[str], str]] = [
    # run: the port URL is checked whole before the spool is created or a port opened
    ("run-option", ["run", "--port", "tcp-listen://127.0.0.1:0?bogus=1"], "'bogus'"),
    ("run-value", ["run", "--port", "tcp-listen://127.0.0.1:0?write_timeout=soon"], "soon"),
    ("run-box-value", ["run", "--port", "box+tcp://127.0.0.1:1?window=0"], "window"),
    ("run-faults", ["run", "--port", "faults+tcp-listen://127.0.0.1:0?flip=2"], "flip"),
    ("run-box-loop", ["run", "--port", "spy+box+loop://x"], "not a byte stream"),
    ("run-scheme", ["run", "--port", "bogus://x"], "unknown port"),
    ("run-loop-option", ["run", "--port", "loop://x?a=1"], "takes no options"),
    ("run-no-port", ["run"], "--port"),
    ("run-dest", ["run", "--port", "loop://x", "--dest", "nonsense"], "AE@HOST:PORT"),
    (
        "run-tls",
        ["run", "--port", "loop://x", "--dest", "A@127.0.0.1:104", "--tls-ca", "{tmp}/no.pem"],
        "no.pem",
    ),
    ("run-profile", ["run", "--port", "loop://x", "--profile", "{tmp}/no.toml"], "no.toml"),
    ("run-max-pdu", ["run", "--port", "loop://x", "--max-pdu", "5"], "--max-pdu"),
    ("run-listen-port", ["run", "--port", "tcp-listen://127.0.0.1:abc"], "abc"),
    ("run-tcp-host", ["run", "--port", "tcp://bad..host:5104"], "bad..host"),
    ("run-tcp-where", ["run", "--port", "tcp://127.0.0.1"], "HOST:PORT"),
    ("run-box-tcp-port", ["run", "--port", "box+tcp://127.0.0.1:99999"], "99999"),
    # forward, send, echo: the PACS's name, TLS files, numbers
    ("forward-host", ["forward", "--dest", "A@bad..host:104"], "cannot resolve bad..host"),
    ("forward-timeout", ["forward", "--dest", "A@127.0.0.1:104", "--timeout", "-1"], "'-1'"),
    (
        "forward-tls",
        ["forward", "--dest", "A@127.0.0.1:104", "--tls-ca", "{tmp}/afile", "--tls-cert"]
        + ["{tmp}/no-cert.pem"],
        "no-cert.pem",
    ),
    ("send-host", ["send", "{tmp}/in.dcm", "--dest", "A@bad..host:104"], "cannot resolve"),
    ("send-missing", ["send", "{tmp}/no.dcm", "--dest", "A@127.0.0.1:9"], "no.dcm"),
    ("send-key", ["send", "{tmp}/in.dcm", "--dest", "A@127.0.0.1:9", "--tls-key", "k"], "--tls"),
    ("echo-host", ["echo", "A@bad..host:104"], "cannot resolve bad..host"),
    ("echo-tls", ["echo", "A@127.0.0.1:104", "--tls-ca", "{tmp}/no.pem"], "no.pem"),
    ("echo-count", ["echo", "A@127.0.0.1:104", "--count", "0"], "--count"),
    ("echo-dest", ["echo", "nonsense"], "AE@HOST:PORT"),
    # convert
    ("convert-missing", ["convert", "{tmp}/no.acr", "--out", "out"], "no.acr"),
    ("convert-jobs", ["convert", "{tmp}/in.dcm", "--out", "out", "--jobs", "0"], "--jobs"),
    ("convert-choice", ["convert", "{tmp}/in.dcm", "--out", "o", "--byte-order", "x"], "'x'"),
    # spool
    ("spool-missing", ["spool", "stats", "--spool", "{tmp}/nospool"], "nospool"),
    ("spool-file", ["spool", "list", "--spool", "{tmp}/afile"], "afile"),
    ("spool-purge", ["spool", "purge", "--older-than", "-1"], "--older-than"),
    ("spool-action", ["spool", "frobnicate"], "frobnicate"),
    ("spool-add-file", ["spool", "add", "{tmp}/in.dcm", "--spool", "{tmp}/afile"], "afile"),
    # emulate
    ("emulate-size", ["emulate", "--port", "loop://x", "--size", "0"], "--size"),
    ("emulate-phantom", ["emulate", "--port", "loop://x", "--phantom", "-2"], "--phantom"),
    ("emulate-option", ["emulate", "--port", "tcp://127.0.0.1:1?bogus=1"], "'bogus'"),
    ("emulate-faults", ["emulate", "--port", "loop://x", "--faults", "flip=abc"], "flip"),
    ("emulate-receiver", ["emulate", "--port", "loop://x", "--role", "receiver"], "--out"),
    ("emulate-role", ["emulate", "--port", "loop://x", "--role", "x"], "'x'"),
    ("emulate-timeout", ["emulate", "--port", "loop://x", "--timeout", "nan"], "nan"),
    # dump and profile: a file that is not there
    ("dump-missing", ["dump", "{tmp}/no.acr"], "no.acr"),
    ("profile-show-missing", ["profile", "show", "{tmp}/no.toml"], "no.toml"),
    ("profile-check-missing", ["profile", "check", "{tmp}/no.toml"], "no.toml"),
    # config and the command line itself
    ("config-missing", ["--config", "{tmp}/no.toml", "config", "show"], "no.toml"),
    ("config-key", ["--config", "{tmp}/bad.toml", "config", "show"], "bogus"),
    ("command", ["frobnicate"], "frobnicate"),
    ("flag", ["run", "--frobnicate"], "--frobnicate"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    peers.write_secondary_capture(tmp_path / "in.dcm")
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "bad.toml").write_text("[forward]\nbogus = 1\n")
    (tmp_path / "cwd").mkdir()
    return tmp_path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("argv", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_usage_error_is_exit_2_one_line_and_leaves_nothing(
    folder: Path, argv: list[str], names: str
) -> None:
    """Findings (issue 11): exit 1 and internals for a missing TLS file, a 35-line
    traceback for a PACS host name that does not resolve, the spool created before a bad
    port option or a missing input was noticed, argparse's usage block above the error,
    a ZeroDivisionError traceback for ``emulate --size 0``."""
    before = _tree(folder)
    args = [a.replace("{tmp}", str(folder)) for a in argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder / "cwd",
        env=env,
    )
    err = done.stderr
    assert done.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert names in lines[0], err
    for leak in LEAKS:
        assert leak not in err, err
    assert _tree(folder) == before, "created: " + ", ".join(sorted(_tree(folder) - before))


def test_a_pacs_name_that_does_not_resolve_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The name server's "no such name", answered here: a test asks no real DNS server."""
    real = socket.getaddrinfo

    def lookup(host: object, *args: object, **kw: object) -> object:
        if host == "pacs.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    source = tmp_path / "in.dcm"
    peers.write_secondary_capture(source)
    spool = tmp_path / "spool"
    for argv in (
        ["echo", "PACS@pacs.example:104"],
        ["send", str(source), "--dest", "PACS@pacs.example:104", "--spool", str(spool)],
        ["forward", "--dest", "PACS@pacs.example:104", "--spool", str(spool)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "cannot resolve pacs.example (Name or service not known)" in err, err
        assert not spool.exists()


@pytest.mark.parametrize("scheme", sorted(BUILTIN))
def test_check_url_checks_every_option_of_every_scheme_and_opens_nothing(scheme: str) -> None:
    """check_url stops each of our factories at its parse_url: a bad option is found
    without opening anything (ftdi:// asks for its library first)."""
    location = {"tcp": "127.0.0.1:1", "tcp-listen": "127.0.0.1:1", "pty": ""}.get(scheme, "x")
    expected: tuple[type[Exception], ...] = (PortURLError,)
    if scheme == "ftdi":
        expected = (PortURLError, PortUnavailableError)
    with pytest.raises(expected) as bad:
        check_url(f"{scheme}://{location}?bogus=1")
    if isinstance(bad.value, PortURLError):
        assert "bogus" in str(bad.value) or "takes no options" in str(bad.value)
    for prefix in ("spy+", "faults+", "spy+faults+"):
        with pytest.raises(expected):
            check_url(f"{prefix}{scheme}://{location}?bogus=1")


def test_a_good_url_is_checked_without_being_opened() -> None:
    port = peers.free_port()
    assert check_url(f"spy+faults+tcp-listen://127.0.0.1:{port}?flip=0.1&write_timeout=2") == (
        "tcp-listen"
    )
    with socket.create_server(("127.0.0.1", port)):  # nobody listens there: it is free
        pass
    assert check_url("loop://checked-only") == "loop"
    assert "checked-only" not in active_names()
    assert check_url(f"box+tcp://127.0.0.1:{port}?window=4&connect_timeout=1") == "tcp"

"""The one error tree (STYLE rule 8): every error the package defines is a BridgeError in
bridge/errors.py, its docstring draws the real hierarchy, timeouts are TimeoutErrors, and
the old import paths give the very same classes.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import bridge
from bridge import errors

ROOT = Path(__file__).resolve().parent.parent


def _tree_classes() -> list[type[BaseException]]:
    return [getattr(errors, name) for name in errors.__all__]


def _primary(cls: type) -> type:
    """The base a class hangs under in the drawing: its first BridgeError base."""
    return next(b for b in cls.__bases__ if issubclass(b, errors.BridgeError))


def _draw(cls: type, depth: int = 0) -> list[str]:
    """The drawing of ``cls`` and what hangs under it, as the errors docstring has it."""
    root = cls is errors.BridgeError
    extras = [] if root else [b.__name__ for b in cls.__bases__ if b is not _primary(cls)]
    line = (
        "    " * depth + cls.__name__ + ("  " + " ".join(f"+{e}" for e in extras) if extras else "")
    )
    children = sorted(
        (c for c in _tree_classes() if c is not errors.BridgeError and _primary(c) is cls),
        key=lambda c: c.__name__,
    )
    return [line] + [row for child in children for row in _draw(child, depth + 1)]


def _drawn() -> list[str]:
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return [row[4:] for row in block.splitlines()]


def test_the_docstring_draws_the_hierarchy() -> None:
    assert _drawn() == _draw(errors.BridgeError)
    assert {row.split()[0] for row in _drawn()} == set(errors.__all__)


def test_every_error_is_a_bridge_error_and_every_timeout_a_timeout_error() -> None:
    for cls in _tree_classes():
        assert issubclass(cls, errors.BridgeError), cls
        assert cls.__module__ == "bridge.errors", cls
        if "Timeout" in cls.__name__:
            assert issubclass(cls, TimeoutError), cls
    assert issubclass(errors.HandshakeTimeout, errors.PortTimeoutError)


def _bridge_modules() -> list[str]:
    names = ["bridge"]
    for info in pkgutil.walk_packages(bridge.__path__, "bridge."):
        names.append(info.name)
    return names


def test_every_public_exception_under_bridge_is_defined_in_errors() -> None:
    """Walk every module: a public exception class defined anywhere else is a defect."""
    stray = []
    for name in _bridge_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("bridge")
                and not value.__name__.startswith("_")
            ):
                if value.__module__ != "bridge.errors":
                    stray.append(f"{name}.{attr} ({value.__module__})")
                else:
                    assert value is getattr(errors, value.__name__), (name, attr)
    assert stray == []


def test_no_module_under_bridge_defines_a_public_exception_class_by_source() -> None:
    """The same, read from the source (a class a module defines but does not import)."""
    found = []
    known = set(errors.__all__) | {"Exception", "BaseException", "ValueError", "TimeoutError"}
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "bridge":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b).split(".")[-1] for b in node.bases}
                if bases & known:
                    found.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert found == []


OLD_PATHS = {
    "bridge.spool.store": ["SpoolError", "SpoolBusyError", "SpoolDamagedError", "SpoolPathError"],
    "bridge.profile": ["ProfileError"],
    "bridge.acrnema.datalink": ["LinkProtocolError"],
    "bridge.ports": ["PortError", "PortUnavailableError", "FaultSpecError", "LinkLost"],
    "bridge.ports.base": ["PortError", "PortUnavailableError", "LinkLost"],
    "bridge.ports.faults": ["FaultSpecError"],
    "bridge.ports.ftdi_gpio": ["HandshakeTimeout"],
    "bridge.box": ["BoxProtocolError"],
    "bridge.box.protocol": ["BoxProtocolError"],
    "bridge.ports.boxproto": ["BoxProtocolError"],
    "bridge.box.host": ["BoxError", "BoxVersionError"],
    "bridge.forward.runner": ["ForwarderFailed"],
    "bridge.forward.fastpath": ["NoResponse"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_import_paths_give_the_same_classes(module: str) -> None:
    for name in OLD_PATHS[module]:
        assert getattr(importlib.import_module(module), name) is getattr(errors, name)
        assert getattr(bridge, name) is getattr(errors, name)


def test_link_down_the_exception_is_a_deprecated_alias_of_link_lost() -> None:
    from bridge.acrnema import stack

    for module in ("bridge.ports", "bridge.ports.base"):
        with pytest.warns(DeprecationWarning, match="LinkLost"):
            old = importlib.import_module(module).LinkDown
        assert old is errors.LinkLost
    assert not issubclass(stack.LinkDown, BaseException)  # the event keeps the name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from bridge.ports import LinkLost  # noqa: F401  (no warning for the new name)


def test_link_protocol_errors_are_local_or_remote_and_carry_the_layer() -> None:
    local = errors.LinkProtocolError("out of order", layer="session")
    remote = errors.LinkProtocolError("bad CRC", layer="datalink", remote=True, status=7)
    assert isinstance(local, errors.LocalProtocolError) and not local.remote
    assert isinstance(remote, errors.RemoteProtocolError) and remote.remote
    assert isinstance(remote, errors.LinkProtocolError) and remote.status == 7
    assert str(local) == "session (local): out of order" and local.reason == "out of order"
    assert str(remote) == "datalink (remote): bad CRC" and remote.layer == "datalink"
    with pytest.raises(errors.RemoteProtocolError):
        raise remote


def test_a_local_or_remote_link_protocol_error_is_always_its_side() -> None:
    """The two subclasses fix ``remote`` whatever the caller passes (one shared __init__)."""
    local = errors.LocalLinkProtocolError("misused", layer="stack", remote=True)
    remote = errors.RemoteLinkProtocolError("broken", remote=False, status=3)
    assert not local.remote and str(local) == "stack (local): misused"
    assert remote.remote and str(remote) == "datalink (remote): broken" and remote.status == 3
    assert isinstance(remote, errors.RemoteProtocolError) and remote.reason == "broken"


def test_the_link_layers_raise_the_tree_s_protocol_errors() -> None:
    """A real misuse of a real layer: the session refuses data before it is open."""
    from bridge.acrnema.session import Session
    from bridge.profile import REFERENCE

    with pytest.raises(errors.LocalProtocolError) as info:
        Session(REFERENCE.session).send(b"too early", 0.0)
    assert info.value.layer == "session" and not info.value.remote


def test_a_handshake_timeout_is_caught_as_a_timeout_error() -> None:
    exc = errors.HandshakeTimeout("ftdi-gpio://x", True, 3, 10, "ack", 50.0)
    with pytest.raises(TimeoutError):
        raise exc
    assert str(exc) == (
        "ftdi-gpio://x: handshake timeout sending word 3 of 10: no ACK asserted after REQ "
        "within 50 ms (phase 'ack')"
    )


def test_box_protocol_errors_carry_the_layer_and_the_status_code() -> None:
    from bridge.box import protocol

    with pytest.raises(errors.ProtocolError) as info:
        protocol.cobs_decode(b"")
    assert info.value.layer == "box"
    assert info.value.status == int(protocol.BadFrameReason.COBS)
    assert isinstance(info.value, errors.PortError) and isinstance(info.value, ValueError)


def test_errors_imports_nothing_from_the_package() -> None:
    tree = ast.parse((ROOT / "bridge" / "errors.py").read_text())
    modules = [
        n.module or "" if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    ]
    assert not [m for m in modules if re.match(r"bridge\b", m)]
    code = (
        "import sys, bridge.errors; print(sorted(m for m in sys.modules if m.startswith('bridge')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['bridge', 'bridge.errors']"


def test_a_trace_that_cannot_be_written_is_a_port_io_error(tmp_path: Path) -> None:
    from bridge.ports import open_port

    missing = tmp_path / "no" / "such" / "folder" / "t.bin"
    with pytest.raises(errors.PortIOError, match="cannot write the trace") as info:
        open_port(f"spy+loop://io-error?trace={missing}")
    assert isinstance(info.value.__cause__, OSError)
    with open_port("loop://io-error") as end, open_port("loop://io-error") as other:
        assert end.wait_peer(1.0) and other.wait_peer(1.0)  # the inner port was closed

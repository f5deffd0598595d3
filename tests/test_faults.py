"""Fault injection: the spec's parser, the statistics of flips and drops, the stall, the
disconnect, reproducibility, and FaultyPort over a loop:// pair."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bridge.acrnema.physical import WordBuffer
from bridge.ports import LinkLost, PortError, WordPort, loop_pair, open_port, read_trace
from bridge.ports.faults import (
    FaultInjector,
    FaultSpec,
    FaultSpecError,
    FaultyPort,
    faults_url,
    hook,
    split_faults_url,
)
from bridge.ports.loop import LoopPort

MILLION = 1_000_000


def words(count: int, seed: int = 0) -> WordBuffer:
    rng = np.random.default_rng(seed)
    return WordBuffer(
        rng.integers(0, 1 << 16, count, dtype=np.uint16),
        rng.integers(0, 2, count, dtype=np.uint8),
    )


def receive_all(port: LoopPort | FaultyPort, timeout: float = 0.2) -> np.ndarray:
    """The words that arrive until none came for ``timeout``."""
    parts = []
    while len(buffer := port.recv(timeout).words):
        parts.append(buffer)
    return np.concatenate(parts) if parts else np.zeros(0, np.uint16)


@pytest.fixture
def link() -> Iterator[tuple[LoopPort, LoopPort]]:
    a, b = loop_pair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


# ----------------------------------------------------------------------- parsing


def test_parse_everything() -> None:
    spec = FaultSpec.parse("flip=1e-4, drop=1e-3,stall=2,disconnect=50000,seed=7,at=4096")
    assert spec == FaultSpec(flip=1e-4, drop=1e-3, stall=2.0, disconnect=50000, seed=7, at=4096)
    assert spec.active
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("unplug=0.25,disconnect=5e4").disconnect == 50000


def test_parse_nothing() -> None:
    assert FaultSpec.parse("") == FaultSpec()
    assert FaultSpec.parse(" , ") == FaultSpec()
    assert not FaultSpec().active
    assert str(FaultSpec()) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flap=1", "unknown name 'flap'"),
        ("flip=often", "'often' is not a number"),
        ("flip=2", "between 0 and 1"),
        ("drop=-0.1", "between 0 and 1"),
        ("stall=-1", "0 or more"),
        ("stall=inf", "0 or more"),
        ("disconnect=-5", "0 or more"),
        ("disconnect=2.5", "not a whole number"),
        ("seed=x", "not a whole number"),
        ("flip", "NAME=VALUE"),
        ("flip=", "NAME=VALUE"),
        ("flip=0.1,flip=0.2", "given twice"),
    ],
)
def test_parse_errors_name_the_item(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message) as info:
        FaultSpec.parse(text)
    assert isinstance(info.value, PortError) and isinstance(info.value, ValueError)
    assert text.split(",")[-1].split("=")[0] in str(info.value)


# -------------------------------------------------------------------- statistics


def flipped(sent: WordBuffer, got: WordBuffer) -> tuple[np.ndarray, np.ndarray]:
    """Per word: how many of the 17 lines changed, and (for one change) which line."""
    diff_words = sent.words ^ got.words
    diff_parity = (sent.parity ^ got.parity).astype(np.int64)
    bits = np.unpackbits(diff_words.view(np.uint8)).reshape(-1, 16).sum(axis=1) + diff_parity
    line = np.where(diff_parity == 1, 16, np.log2(np.maximum(diff_words, 1)).astype(np.int64))
    return bits, line


def test_flip_rate_and_one_bit_of_seventeen() -> None:
    rate = 1e-2
    injector = FaultInjector(FaultSpec(flip=rate, seed=3))
    sent = words(MILLION, seed=1)
    got = injector.apply(sent, "out")
    bits, line = flipped(sent, got)
    changed = np.flatnonzero(bits)
    assert set(np.unique(bits[changed]).tolist()) == {1}  # exactly one line each
    expected, sigma = MILLION * rate, np.sqrt(MILLION * rate * (1 - rate))
    assert abs(len(changed) - expected) < 5 * sigma
    assert injector.stats["flips"] == len(changed)
    per_line = np.bincount(line[changed], minlength=17)
    assert len(per_line) == 17
    mean = len(changed) / 17
    assert np.all(np.abs(per_line - mean) < 5 * np.sqrt(mean))  # uniform over the 17


def test_small_flip_rate_on_a_million_words() -> None:
    rate = 1e-4
    injector = FaultInjector(FaultSpec(flip=rate, seed=4))
    sent = words(MILLION, seed=2)
    got = injector.apply(sent, "in")
    bits, _ = flipped(sent, got)
    assert abs(int(np.count_nonzero(bits)) - MILLION * rate) < 5 * np.sqrt(MILLION * rate)
    assert np.all(bits <= 1)


def test_drop_rate_keeps_order() -> None:
    rate = 1e-2
    injector = FaultInjector(FaultSpec(drop=rate, seed=5))
    sent = WordBuffer(
        np.arange(MILLION, dtype=np.int64).astype(np.uint16), np.zeros(MILLION, np.uint8)
    )
    got = injector.apply(sent, "out")
    lost = MILLION - len(got.words)
    assert abs(lost - MILLION * rate) < 5 * np.sqrt(MILLION * rate)
    assert injector.stats["drops"] == lost
    # what is left is the input with holes: consecutive words never go backwards by much
    steps = np.diff(got.words).astype(np.uint16)  # modulo 2**16
    assert np.all(steps >= 1) and np.all(steps < 20)


def test_seeded_runs_repeat_and_directions_are_independent() -> None:
    spec = FaultSpec(flip=1e-3, drop=1e-3, seed=7)
    sent = words(100_000, seed=3)
    first, second = FaultInjector(spec), FaultInjector(spec)
    a = first.apply(sent, "out")
    second.apply(words(5000, seed=9), "in")  # traffic the other way changes nothing
    b = second.apply(sent, "out")
    assert np.array_equal(a.words, b.words) and np.array_equal(a.parity, b.parity)
    other = FaultInjector(FaultSpec(flip=1e-3, drop=1e-3, seed=8)).apply(sent, "out")
    assert len(other.words) != len(a.words) or not np.array_equal(other.words, a.words)
    assert first.stats["seed"] == 7


def test_without_a_seed_one_is_drawn_and_kept() -> None:
    injector = FaultInjector(FaultSpec(flip=1e-3))
    assert isinstance(injector.stats["seed"], int)
    replay = FaultInjector(FaultSpec(flip=1e-3, seed=injector.stats["seed"]))
    sent = words(50_000)
    assert np.array_equal(injector.apply(sent, "out").words, replay.apply(sent, "out").words)


def test_the_input_buffer_is_not_changed() -> None:
    sent = words(10_000, seed=4)
    copy = WordBuffer(sent.words.copy(), sent.parity.copy())
    FaultInjector(FaultSpec(flip=0.5, drop=0.5, seed=1)).apply(sent, "out")
    assert np.array_equal(sent.words, copy.words) and np.array_equal(sent.parity, copy.parity)


# ------------------------------------------------------------------------- stall


def test_stall_discards_both_ways_for_its_time(link: tuple[LoopPort, LoopPort]) -> None:
    a, b = link
    faulty = FaultyPort(a, "stall=0.4,at=100")
    faulty.send(words(60, seed=1))
    b.send(words(30, seed=2))
    assert len(faulty.recv(0.2).words) == 30
    faulty.send(words(50, seed=3))  # words 90..139: the stall starts at word 100
    assert len(receive_all(b)) == 60 + 10
    start = time.monotonic()
    b.send(words(20, seed=4))
    assert len(faulty.recv(0.1).words) == 0  # the far side stopped answering
    faulty.send(words(20, seed=5))
    assert len(b.recv(0.1).words) == 0
    while time.monotonic() - start < 0.45:
        faulty.recv(0.05)
    faulty.send(words(7, seed=6))
    assert len(b.recv(0.5).words) == 7
    b.send(words(8, seed=7))
    assert len(faulty.recv(0.5).words) == 8
    assert faulty.stats["stalls"] == 1
    assert faulty.stats["stalled_words"] == 40 + 20 + 20


def test_stall_via_a_loop_hook() -> None:
    fault = hook("stall=0.3,at=10")
    a, b = loop_pair(hook=fault)
    try:
        a.send(words(15))
        assert len(b.recv(0.2).words) == 10
        a.send(words(5))
        assert len(b.recv(0.1).words) == 0
        time.sleep(0.3)
        a.send(words(5))
        assert len(b.recv(0.2).words) == 5
        assert fault.injector.stats["stalls"] == 1
    finally:
        a.close()
        b.close()


def test_hook_refuses_disconnect() -> None:
    with pytest.raises(FaultSpecError, match="FaultyPort"):
        hook("disconnect=10")


# -------------------------------------------------------------------- disconnect


def test_disconnect_happens_once(link: tuple[LoopPort, LoopPort]) -> None:
    a, b = link
    faulty = FaultyPort(a, FaultSpec(disconnect=1000, unplug=0.3))
    faulty.send(words(600, seed=1))
    with pytest.raises(LinkLost, match="disconnected"):
        faulty.send(words(600, seed=2))  # 400 pass, then the link breaks
    assert faulty.stats["disconnects"] == 1
    assert not faulty.peer_ready
    assert len(b.recv(0.5).words) == 1000  # the words that passed before the break come
    with pytest.raises(LinkLost):
        b.recv(0.5)  # first, then the far side sees READY drop
    with pytest.raises(LinkLost, match="unplugged"):
        faulty.send(words(5))
    with pytest.raises(LinkLost, match="unplugged"):
        faulty.recv(0.1)
    start = time.monotonic()
    assert faulty.wait_peer(2)
    assert 0.1 < time.monotonic() - start < 1.5
    assert b.wait_peer(1)
    for seed in range(5):  # 2500 more words: no second disconnect
        faulty.send(words(500, seed=seed))
        assert len(receive_all(b)) == 500
    assert faulty.stats["disconnects"] == 1


def test_disconnect_on_the_receiving_side(link: tuple[LoopPort, LoopPort]) -> None:
    a, b = link
    faulty = FaultyPort(a, "disconnect=100,unplug=0.2")
    b.send(words(150))
    assert len(faulty.recv(0.5).words) == 100  # what came before the break arrives
    with pytest.raises(LinkLost):
        faulty.recv(0.1)
    with pytest.raises(LinkLost):
        b.send(words(1))
    assert faulty.wait_peer(2) and b.wait_peer(1)


# --------------------------------------------------------------- FaultyPort


def test_faulty_port_flips_both_ways(link: tuple[LoopPort, LoopPort]) -> None:
    a, b = link
    faulty = FaultyPort(a, "flip=0.05,seed=11")
    sent = words(20_000, seed=12)
    faulty.send(sent)
    got = b.recv(1)
    out_flips = int(np.count_nonzero((sent.words != got.words) | (sent.parity != got.parity)))
    b.send(sent)
    got = faulty.recv(1)
    in_flips = int(np.count_nonzero((sent.words != got.words) | (sent.parity != got.parity)))
    for count in (out_flips, in_flips):
        assert abs(count - 1000) < 5 * np.sqrt(1000)
    assert faulty.stats["flips"] == out_flips + in_flips
    assert faulty.stats["words"] == 40_000
    assert faulty.url == a.url


def test_faulty_port_without_faults_is_transparent(link: tuple[LoopPort, LoopPort]) -> None:
    a, b = link
    faulty = FaultyPort(a, FaultSpec())
    faulty.send(words(100, seed=1))
    got = b.recv(1)
    assert np.array_equal(got.words, words(100, seed=1).words)
    faulty.set_ready(False)
    with pytest.raises(LinkLost):
        b.recv(0.5)
    faulty.set_ready(True)
    assert b.wait_peer(1) and faulty.wait_peer(1) and faulty.peer_ready
    faulty.close()
    with pytest.raises(LinkLost):
        b.recv(0.5)


# ------------------------------------------------------------------ the faults+ prefix


def one_bit_apart(sent: WordBuffer, got: WordBuffer) -> bool:
    """Every word of ``got`` is its word of ``sent`` with exactly one of its 17 lines
    flipped (``flip=1``: each word gets one bit flipped)."""
    data = np.bitwise_xor(sent.words, got.words).astype(np.uint32)
    lines = data | (np.bitwise_xor(sent.parity, got.parity).astype(np.uint32) << 16)
    return len(got.words) == len(sent.words) and bool(
        np.all(np.array([bin(int(x)).count("1") for x in lines]) == 1)
    )


def receive_buffer(port: WordPort, count: int, timeout: float = 10.0) -> WordBuffer:
    parts: list[WordBuffer] = []
    deadline = time.monotonic() + timeout
    while sum(len(p.words) for p in parts) < count and time.monotonic() < deadline:
        parts.append(port.recv(0.1))
    return WordBuffer(
        np.concatenate([p.words for p in parts]), np.concatenate([p.parity for p in parts])
    )


def test_faults_prefix_breaks_any_port_as_the_url_says() -> None:
    with open_port("faults+loop://fp1?flip=1&seed=3") as port, open_port("loop://fp1") as peer:
        assert isinstance(port, FaultyPort) and port.spec == FaultSpec(flip=1.0, seed=3)
        assert port.url == "faults+loop://fp1?flip=1&seed=3"
        assert port.wait_peer(5.0) and peer.wait_peer(5.0)
        sent = words(400, seed=1)
        port.send(sent)
        assert one_bit_apart(sent, receive_buffer(peer, 400))
        peer.send(words(300, seed=2))
        assert one_bit_apart(words(300, seed=2), receive_buffer(port, 300))
        assert port.stats["flips"] == 700 and port.stats["seed"] == 3


def test_faults_prefix_replays_the_same_faults_as_emulate_faults() -> None:
    """The URL's spec is the very spec ``--faults`` takes: same seed, same damage."""
    got = []
    for index, url in enumerate(["faults+loop://{}?flip=0.05&drop=0.05&seed=9", "loop://{}"]):
        name = f"fp-replay-{index}"
        port = open_port(url.format(name))
        if not isinstance(port, FaultyPort):
            port = FaultyPort(port, "flip=0.05,drop=0.05,seed=9")
        with port, open_port(f"loop://{name}") as peer:
            port.send(words(5000, seed=4))
            got.append(receive_all(peer))
    assert len(got[0]) < 5000 and np.array_equal(got[0], got[1])


@pytest.mark.parametrize("inner", ["loop://{}", "spy+loop://{}?trace={}"])
def test_emulate_faults_opens_the_very_port_of_the_faults_prefix(
    inner: str, tmp_path: Path
) -> None:
    """``--faults SPEC`` goes through the one ``faults+`` path: the same port as the URL."""
    from bridge.cli.link import _open

    ports, got = [], []
    for index, spelling in enumerate(["url", "flag"]):
        name = f"fp-spell-{index}"
        url = inner.format(name, tmp_path / f"{spelling}.bin")
        sep = "&" if "?" in url else "?"
        if spelling == "url":
            port = _open(f"faults+{url}{sep}flip=0.05&drop=0.05&seed=9")
        else:
            port = _open(url, "flip=0.05, drop=0.05,seed=9")
        with port, open_port(f"loop://{name}") as peer:
            port.send(words(5000, seed=4))
            got.append(receive_all(peer))
        ports.append(port)
    url_port, flag_port = ports
    assert isinstance(url_port, FaultyPort) and isinstance(flag_port, FaultyPort)
    assert url_port.spec == flag_port.spec == FaultSpec(flip=0.05, drop=0.05, seed=9)
    assert type(url_port.port) is type(flag_port.port)
    assert flag_port.url == url_port.url.replace("fp-spell-0", "fp-spell-1").replace(
        "url.bin", "flag.bin"
    )
    assert len(got[0]) < 5000 and np.array_equal(got[0], got[1])
    assert url_port.stats == flag_port.stats


def test_faults_url_is_the_inverse_of_split_faults_url() -> None:
    url = faults_url("loop://x?duplex=1", "flip=1e+0, seed=3")
    assert url == "faults+loop://x?duplex=1&flip=1e%2B0&seed=3"
    assert split_faults_url(url) == ("loop://x?duplex=1", FaultSpec(flip=1.0, seed=3))
    assert faults_url("loop://x", " , ") == "faults+loop://x"
    with pytest.raises(FaultSpecError, match="given twice"):
        open_port(faults_url("faults+loop://twice?flip=1", "flip=0.5"))


def test_emulate_faults_checks_its_spec_before_it_opens_the_port() -> None:
    from bridge.cli.link import _open

    with pytest.raises(FaultSpecError, match=r"^fault 'flop=1': unknown name 'flop'"):
        _open("bogus://x", "flop=1")


def test_faults_prefix_composes_with_spy_on_either_side(tmp_path: Path) -> None:
    outside, inside = tmp_path / "outside.bin", tmp_path / "inside.bin"
    sent = words(200, seed=5)
    for url, trace in [
        (f"spy+faults+loop://fs1?flip=1&seed=1&trace={outside}", outside),
        (f"faults+spy+loop://fs2?trace={inside}&flip=1&seed=1", inside),
    ]:
        name = "fs1" if trace is outside else "fs2"
        with open_port(url) as port, open_port(f"loop://{name}") as peer:
            port.send(sent)
            assert one_bit_apart(sent, receive_buffer(peer, 200))
        [record] = [r for r in read_trace(trace) if r.direction == "out"]
        if trace is outside:  # spy outside the faults: the words as the caller sent them
            assert np.array_equal(record.buffer.words, sent.words)
        else:  # spy inside: the words as they went onto the link, one bit off each
            assert one_bit_apart(sent, record.buffer)


def test_faults_prefix_composes_with_box_over_tcp_to_an_emulated_box() -> None:
    from bridge.testing.box import EmulatedBox

    line, peer = loop_pair()
    line.set_ready(False)
    try:
        with EmulatedBox(line, "tcp-listen://127.0.0.1:0") as box:
            url = "faults+" + box.host_url() + "&flip=1&seed=2"
            with open_port(url) as port:
                assert isinstance(port, FaultyPort) and port.port.url.startswith("box+tcp://")
                assert "flip" not in port.port.url  # the box gets only its own options
                deadline = time.monotonic() + 20
                while not (port.wait_peer(0.02) & peer.wait_peer(0.02)):
                    assert time.monotonic() < deadline
                sent = words(300, seed=7)
                port.send(sent)
                assert one_bit_apart(sent, receive_buffer(peer, 300))
            assert box.error is None
    finally:
        line.close()
        peer.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("faults+loop://bad?flip=2", r"^faults\+loop://bad\?flip=2: fault flip=2.0: a rate is"),
        ("faults+loop://bad?seed=x", r"^faults\+loop://bad\?seed=x: fault 'seed=x': 'x' is not"),
        ("faults+loop://bad?flip=", r"^faults\+loop://bad\?flip=: fault 'flip=': write NAME="),
        ("faults+?flip=1", r"^faults\+\?flip=1: give the port to break"),
    ],
)
def test_a_bad_faults_url_is_a_one_line_port_error(url: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message) as info:
        open_port(url)
    assert isinstance(info.value, PortError) and "\n" not in str(info.value)
    with open_port("loop://bad") as end, open_port("loop://bad") as other:  # nothing leaked
        assert end.wait_peer(1.0) and other.wait_peer(1.0)


def test_an_unknown_item_goes_to_the_inner_port_which_names_it() -> None:
    with pytest.raises(PortError, match=r"loop://bad\?flop=1.*faults\+ items: flip, drop"):
        open_port("faults+loop://bad?flop=1")


def test_the_cli_reports_a_bad_faults_url_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bridge.cli import main

    argv = ["emulate", "--role", "receiver", "--port", "faults+loop://cli?drop=7"]
    code = main([*argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err  # a usage error
    assert (
        err == "acrnema-bridge: faults+loop://cli?drop=7: fault drop=7.0: a rate is between 0 and 1"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("bogus://x", "unknown port"),
        ("loop://x?nonsense=1", "takes no options"),
        ("tcp://127.0.0.1:1?nodelay=maybe", "nodelay"),
        ("box+loop://x?zz=1", "takes no options"),
    ],
)
def test_a_bad_port_url_is_a_usage_error(
    url: str, says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Finding (issue 11): a bad port URL scheme or option exited 1 like a runtime failure."""
    from bridge.cli import main

    spool = tmp_path / "spool"
    assert main(["emulate", "--port", url, "--phantom", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err and "Traceback" not in err
    assert main(["run", "--port", url, "--spool", str(spool)]) == 2
    assert says in capsys.readouterr().err
    if says == "unknown port":  # found before the spool is touched
        assert not spool.exists()

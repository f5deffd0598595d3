"""Control lines in emulator captures and in ``profile fit``: PERR, READY_A/READY_B, BREQ.

The emulator's ``--vcd`` must show what the profile says the bus carries when a word is
damaged (PERR with the receiver's answer), and an emulated receiver must never wait for
ever for a scanner that gave up; ``profile fit`` must then name each control line it can
tell from edge behaviour, with its evidence and a confidence, and say plainly what it
cannot tell (docs/capture.md, "Fitting a profile").
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from bridge.cli import main

_names = itertools.count()


def test_a_receiver_with_faults_and_vcd_ends_when_its_scanner_gives_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Faults on the receiver's port damage so many words that the scanner gives the
    image up and goes: the receiver, asked for one image, must not wait for ever for a
    scanner that is gone (it did: a hang); it ends, exit 1, within its --timeout, and
    still writes its VCD."""
    url = f"loop://fit-lines-gone-{next(_names)}"
    vcd = tmp_path / "rx.vcd"
    codes: list[int] = []
    receiver = threading.Thread(
        target=lambda: codes.append(
            main(
                ["emulate", "--port", url, "--role", "receiver", "--out", str(tmp_path / "rx")]
                + ["--count", "1", "--faults", "flip=2e-2,seed=3", "--vcd", str(vcd)]
                + ["--timeout", "2"]
            )
        ),
        daemon=True,  # on the old code it never ends: let the test run finish anyway
    )
    receiver.start()
    sent = main(
        ["emulate", "--port", url, "--phantom", "1", "--size", "16", "--attempts", "1"]
        + ["--timeout", "5"]
    )
    receiver.join(60)  # generous: only a hang takes this long
    assert sent == 1  # the scanner gave the image up
    assert not receiver.is_alive(), "the receiver still waits for a scanner that is gone"
    assert codes == [1]
    assert vcd.exists()
    assert "the scanner has been gone" in capsys.readouterr().err

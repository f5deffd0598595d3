"""Profile fitting of the application knobs (issue 13, items 3 and 4).

Captures the emulator writes under profiles that vary the ``[application]`` dialect knobs
(the Recognition Code written and accepted, (0000,0001) Length to End, the answer to
CANCEL, the SPI command group and the flow where the data set follows the reply), alone
and combined, and with the physical and link knobs too (the shipped 1993 Philips SPI
profile among them). ``profile fit`` with no map, probes renamed, shuffled and some
inverted, must give a profile with which ``capture decode`` alone gives back the very
pixels sent, and that states the application keys a receiver needs to talk to that
scanner: each as the emulated scanner had it, or, where the capture cannot show it,
named in the ``# NOT FITTED:`` list (never a silent guess).
"""

from __future__ import annotations

import re
import threading
import tomllib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from emulated import emulate_vcd, scramble, sent_pixels

from bridge.capture.trace import export_vcd
from bridge.cli import main
from bridge.link.endpoint import Endpoint
from bridge.link.receiver import FolderWriter
from bridge.link.requester import Scanner
from bridge.link.responder import Responder
from bridge.ports.loop import loop_pair
from bridge.ports.spy import SpyPort
from bridge.profile import Profile, load_profile
from bridge.testing.phantom import phantom_images

ROOT = Path(__file__).parents[1]
PHILIPS = (ROOT / "profiles" / "philips-spi-1993.toml").read_text()
PHILIPS_APPLICATION = "[application]" + PHILIPS.split("[application]", 1)[1]
SPI = (
    "[application.spi_commands]\ngcbegin = [0x0028, 0x8028]\nready = [0x0008, 0x8008]\n"
    "send = [0x0001, 0x8001]\ngcend = [0x0029, 0x8029]\n"
)
OTHER_SPI = (
    "[application.spi_commands]\ngcbegin = [0x0041, 0x8041]\nready = [0x0042, 0x8042]\n"
    "send = [0x0043, 0x8043]\ngcend = [0x0044, 0x8044]\n"
)

# variant -> (profile text, how the capture is made: "cli", ``emulate --vcd``; "api", the
# same two ends through the API; "cancel", through the API, the scanner sending CANCEL first)
VARIANTS: dict[str, tuple[str, str]] = {
    "recognition-1.0": ('[application]\nrecognition_code = "ACR-NEMA 1.0"', "cli"),
    "accepted-codes": (
        '[application]\naccepted_recognition_codes = ["ACR-NEMA 2.0", "ACR-NEMA 1.0"]',
        "cli",
    ),
    "length-to-end-written": ("[application]\nlength_to_end_written = true", "cli"),
    "length-to-end-written-required": (
        "[application]\nlength_to_end_written = true\nlength_to_end_required = true",
        "cli",
    ),
    "cancel-8fff-success": (
        '[application]\ncancel_answer = "success"\n[application.commands]\n'
        "cancel = [0x0FFF, 0x8FFF]",
        "cancel",
    ),
    "cancel-unanswered": ('[application]\ncancel_answer = "none"', "cancel"),
    "cancel-reference": ("", "cancel"),
    "cancel-not-in-capture": (
        '[application]\ncancel_answer = "success"\n[application.commands]\n'
        "cancel = [0x0FFF, 0x8FFF]",
        "cli",
    ),
    # (through the API: the emulator's receiver, run with --count, stops at the image,
    # before it answers GCEND, when the data set comes in the SEND request)
    "spi-data-in-request": (SPI, "api"),
    "spi-data-after-reply": ("[application]\ndata_set_after_reply = true\n" + SPI, "cli"),
    "spi-other-codes-after-reply": (
        "[application]\ndata_set_after_reply = true\n" + OTHER_SPI,
        "cli",
    ),
    "philips-spi-1993": (PHILIPS, "cli"),
    "philips-spi-1993-cancel": (PHILIPS, "cancel"),
    "philips-spi-1993-two-phase-little-crc-no-session": (
        '[physical]\nhandshake = "two-phase"\ntext_byte_order = "little"\n'
        'binary_byte_order = "little"\n[datalink]\ncrc = "crc-16"\ncrc_poly = 0x8bb7\n'
        'crc_init = 0\n[session]\nmode = "none"\n' + PHILIPS_APPLICATION,
        "cli",
    ),
    "combined-1.0-length-to-end-bare-transport": (
        '[physical]\nparity = "none"\n[transport]\nmode = "none"\n[application]\n'
        'recognition_code = "ACR-NEMA 1.0"\nlength_to_end_written = true',
        "cancel",
    ),
}


def _emulate_api(tmp: Path, text: str, cancel: bool) -> tuple[Path, Path]:
    """The emulated scanner sends one phantom slice (after a CANCEL if ``cancel``) to the
    emulated receiver over ``loop://``, both under the profile ``text``; the bus as the
    scanner saw it as a VCD (as ``emulate --vcd`` writes it): (the VCD, the profile)."""
    path = tmp / "profile.toml"
    path.write_text(text + "\n")
    profile = load_profile(path)
    scanner_port, receiver_port = loop_pair()
    trace = tmp / "bus.trace"
    spy = SpyPort(scanner_port, trace)
    responder = Responder(Endpoint(receiver_port, profile), FolderWriter(tmp / "rx"))
    stop = threading.Event()
    thread = threading.Thread(target=responder.serve, args=(stop,), name="fit-app-receiver")
    thread.start()
    try:
        scanner = Scanner(Endpoint(spy, profile), attempts=1, response_timeout=20.0)
        if cancel:
            unanswered = profile.application.cancel_answer == "none"
            answer = scanner.cancel(timeout=1.0 if unanswered else 10.0)
            assert (answer is None) == unanswered
        [result] = scanner.send(phantom_images(1, rows=16))
        assert result.ok, result.errors
        scanner.close(timeout=2.0)
    finally:
        stop.set()
        thread.join(timeout=30)
        spy.close()
        receiver_port.close()
    assert not thread.is_alive()
    vcd = tmp / "bus.vcd"
    export_vcd(trace, vcd, profile, "A")
    return vcd, path


def _not_fitted(text: str) -> str:
    """The ``# NOT FITTED:`` list of a fitted profile."""
    block = text.split("# NOT FITTED:", 1)[1].split('\nname = "fitted"', 1)[0]
    return block


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_fit_states_the_application_keys_and_decodes_pixel_exact(
    tmp_path: Path, variant: str
) -> None:
    text, how = VARIANTS[variant]
    if how == "cli":
        vcd, path = emulate_vcd(tmp_path, text, images=1, size=16)
    else:
        vcd, path = _emulate_api(tmp_path, text, cancel=how == "cancel")
    truth: Profile = load_profile(path)
    scrambled = tmp_path / "probes.vcd"
    scramble(vcd, scrambled, seed=sorted(VARIANTS).index(variant))
    fitted = tmp_path / "fitted.toml"
    assert main(["profile", "fit", str(scrambled), "--out", str(fitted)]) == 0
    out = tmp_path / "out"
    code = main(["capture", "decode", str(scrambled), "--profile", str(fitted), "--out", str(out)])
    assert code == 0
    got = [pydicom.dcmread(p).pixel_array for p in sorted(out.glob("IMG*.dcm"))]
    sent = sent_pixels(path, images=1, size=16)
    assert len(got) == len(sent) == 1 and np.array_equal(got[0], sent[0])

    written = fitted.read_text()
    unfitted = _not_fitted(written)
    table = tomllib.loads(written).get("application", {})
    # every application key written carries its evidence and a confidence
    section = written.split("[application]", 1)[1].split("\n\n", 1)[0] if table else ""
    for line in section.splitlines()[1:]:
        assert re.search(r"  # (high|medium|low): .+", line), line
    ap, want = load_profile(fitted).application, truth.application
    assert ap.recognition_code == want.recognition_code
    assert "recognition_code" in table
    # the code seen is taken; which others the scanner would take does not show
    accepted = ap.accepted_recognition_codes
    assert not accepted or want.recognition_code in accepted
    assert "accepted_recognition_codes" in unfitted
    assert ap.length_to_end_written == want.length_to_end_written
    assert "length_to_end_written" in table
    assert ap.length_to_end_required == want.length_to_end_required or (
        "length_to_end_required" in unfitted
    )
    assert dict(ap.spi_commands) == dict(want.spi_commands)
    assert ap.data_set_after_reply == want.data_set_after_reply
    if want.spi_commands:
        assert "spi_commands" in table and "data_set_after_reply" in table
        assert ap.spi_recognition_code.strip() == want.spi_recognition_code.strip()
    if how == "cancel":
        assert ap.cancel_answer == want.cancel_answer and "cancel_answer" in table
        if want.cancel_answer != "none":  # the response code on the wire (0: request | 8000H)
            request, response = want.commands["cancel"]
            assert ap.commands["cancel"] == (request, response or request | 0x8000)
    else:
        assert "cancel_answer" in unfitted
    assert ap.station_id_length == want.station_id_length or "station_id_length" in unfitted


@pytest.mark.parametrize("variant", ["philips-spi-1993", "spi-other-codes-after-reply"])
def test_capture_decode_joins_the_data_set_that_follows_the_reply(
    tmp_path: Path, variant: str
) -> None:
    vcd, path = emulate_vcd(tmp_path, VARIANTS[variant][0], images=2, size=16)
    out = tmp_path / "out"
    assert main(["capture", "decode", str(vcd), "--profile", str(path), "--out", str(out)]) == 0
    got = [pydicom.dcmread(p).pixel_array for p in sorted(out.glob("IMG*.dcm"))]
    sent = sent_pixels(path, images=2, size=16)
    assert len(got) == len(sent) == 2
    assert all(np.array_equal(a, b) for a, b in zip(got, sent, strict=True))


def test_a_fitted_code_pair_is_written_in_hexadecimal_both() -> None:
    from bridge.capture.fit import _value

    assert _value([0x0008, 0x8008]) == "[0x0008, 0x8008]"  # was "[8, 0x8008]"
    assert _value([1, 2, 3]) == "[1, 2, 3]"

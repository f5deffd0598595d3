"""The dialect knobs of ``[application]`` and the shipped profiles (issue 13, item 4).

Each knob is driven end to end over ``loop://``: the emulator's requesting role
(:class:`~bridge.link.requester.Scanner`) against the answering role the bridge and the
emulator's receiver share (:class:`~bridge.link.responder.Responder`), and the 1993
Philips SPI profile also against the bridge service itself (docs/link-profile.md,
"Dialect knobs: messages" and "Shipped profiles").
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import struct
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.acrnema.commands import Command, Message, decode_message, encode_message
from bridge.acrnema.datalink import LinkProtocolError
from bridge.cli import main
from bridge.link.endpoint import Endpoint
from bridge.link.receiver import FolderWriter
from bridge.link.requester import Scanner
from bridge.link.responder import Answer, Responder
from bridge.ports.loop import loop_pair
from bridge.profile import (
    REFERENCE,
    LinkStatus,
    Profile,
    load_profile,
    profile_from_mapping,
    to_toml,
)
from bridge.service import Bridge
from bridge.spool.store import Spool
from bridge.testing.phantom import phantom_images

ROOT = Path(__file__).parents[1]
PROFILES = ROOT / "profiles"
SPI = {
    "gcbegin": [0x0028, 0x8028],
    "ready": [0x0008, 0x8008],
    "send": [0x0001, 0x8001],
    "gcend": [0x0029, 0x8029],
}


def app(**keys: Any) -> Profile:
    """The reference with ``keys`` of ``[application]`` changed (validated)."""
    return profile_from_mapping({"application": keys})


@dataclasses.dataclass
class Seen:
    """What the receiving end's store handler was given."""

    messages: list[Message] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def link(
    scanner_profile: Profile,
    receiver_profile: Profile,
    folder: Path,
    *,
    handler: Callable[[Message], Answer] | None = None,
    calling: str = "SCANNER",
) -> Iterator[tuple[Scanner, Responder, Seen]]:
    """A scanner and a receiver (its FolderWriter recording each request) over loop://."""
    scanner_port, receiver_port = loop_pair()
    writer = FolderWriter(folder)
    seen = Seen()

    def store(message: Message) -> Answer:
        seen.messages.append(message)
        return (handler or writer)(message)

    responder = Responder(Endpoint(receiver_port, receiver_profile), store)
    stop = threading.Event()
    thread = threading.Thread(target=responder.serve, args=(stop,), name="knobs-receiver")
    thread.start()
    try:
        scanner = Scanner(
            Endpoint(scanner_port, scanner_profile),
            calling=calling,
            attempts=1,
            response_timeout=20.0,
        )
        yield scanner, responder, seen
        scanner.close(timeout=2.0)
    finally:
        stop.set()
        thread.join(timeout=30)
        scanner_port.close()
        receiver_port.close()
    assert not thread.is_alive(), "the receiver did not stop"


def received(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.glob("IMG*.acr"))]


# ---------------------------------------------------------------- (0000,0001) Length to End


def test_length_to_end_counts_the_bytes_after_it_and_a_wrong_one_is_refused() -> None:
    message = Message(Command(0x0001, 7, 0x0000, initiator="CT1"), b"\x08\x00\x10\x00" * 5)
    for order in ("big", "little"):
        raw = encode_message(message, order, length_to_end=True)
        fmt = ">" if order == "big" else "<"
        assert struct.unpack_from(fmt + "HHI", raw, 12) == (0, 1, 4)  # right after (0000,0000)
        assert struct.unpack_from(fmt + "I", raw, 20)[0] == len(raw) - 24
        back = decode_message(raw, order, length_to_end=True)
        assert back.command.length_to_end == len(raw) - 24 and back.data == message.data
        with pytest.raises(LinkProtocolError, match="Length to End says"):
            decode_message(raw[:-2], order, length_to_end=True)
    # off (the reference): not written, and one that comes is kept as it came
    assert encode_message(message) == encode_message(message, length_to_end=False)
    assert struct.unpack_from(">HH", encode_message(message), 12) == (0, 0x0100)


@pytest.mark.parametrize(
    ("written", "required", "stored"),
    [(True, True, True), (True, False, True), (False, True, False), (False, False, True)],
)
def test_length_to_end_written_and_required_round_trip(
    tmp_path: Path, written: bool, required: bool, stored: bool
) -> None:
    images = phantom_images(2, rows=32)
    with link(
        app(length_to_end_written=written),
        app(length_to_end_required=required),
        tmp_path / "in",
    ) as (scanner, responder, seen):
        results = scanner.send(images)
    assert [r.ok for r in results] == [stored, stored]
    if stored:
        assert received(tmp_path / "in") == [image.data for image in images]
        if written and required:  # read (and checked) where the profile asks for it
            assert all(m.command.length_to_end for m in seen.messages)
    else:
        assert "cannot_understand C000H" in results[0].errors[0]
        assert "no (0000,0001) Length to End" in results[0].errors[0]
        assert responder.stats.refused == 2 and not seen.messages


def test_a_response_without_length_to_end_is_refused_where_it_is_required(
    tmp_path: Path,
) -> None:
    with link(app(length_to_end_required=True), REFERENCE, tmp_path / "in") as (scanner, _, _s):
        [result] = scanner.send(phantom_images(1, rows=32))
    assert not result.ok
    assert "store response refused: no (0000,0001) Length to End" in result.errors[0]


# ---------------------------------------------------------------- the answer to CANCEL


@pytest.mark.parametrize(
    ("keys", "status"),
    [
        ({}, 0xC000),  # the reference: cannot_understand, as before
        ({"cancel_answer": "success", "commands": {"cancel": [0x0FFF, 0x8FFF]}}, 0x0000),
        ({"cancel_answer": "none"}, None),
    ],
)
def test_cancel_is_answered_as_the_profile_says(
    tmp_path: Path, keys: dict[str, Any], status: int | None
) -> None:
    profile = app(**keys)
    with link(profile, profile, tmp_path / "in") as (scanner, responder, _seen):
        answer = scanner.cancel(timeout=2.0 if status is None else 10.0)
        [after] = scanner.send(phantom_images(1, rows=32))  # the link goes on either way
    assert answer == status
    assert after.ok
    assert responder.stats.unknown == (1 if status == 0xC000 else 0)


@pytest.mark.parametrize(
    ("profile_text", "said"),
    [
        ("", "CANCEL answered with status C000H (cannot_understand)"),
        (
            '[application]\ncancel_answer = "success"\n[application.commands]\n'
            "cancel = [0x0FFF, 0x8FFF]",
            "CANCEL answered with status 0000H (success)",
        ),
        ('[application]\ncancel_answer = "none"', "CANCEL sent; no answer, as the profile says"),
    ],
    ids=["reference", "8fff-success", "none"],
)
def test_emulate_cancel_sends_a_cancel_first_and_says_the_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile_text: str, said: str
) -> None:
    """``emulate --cancel``: the emulated scanner sends CANCEL before its images, as the
    1993 Philips scanner did (evidence N1), and says how it was answered."""
    import emulated

    profile = tmp_path / "profile.toml"
    profile.write_text(profile_text + "\n")
    emulated.emulate(tmp_path / "in", images=1, size=32, profile=profile, scanner=["--cancel"])
    out = capsys.readouterr()
    assert f"emulate: {said}" in out.out + out.err
    assert len(received(tmp_path / "in")) == 1


def test_the_cancel_answer_is_8fff_with_success(tmp_path: Path) -> None:
    profile = app(cancel_answer="success", commands={"cancel": [0x0FFF, 0x8FFF]})
    port_a, port_b = loop_pair()
    stop = threading.Event()
    responder = Responder(Endpoint(port_b, profile), lambda m: Answer(LinkStatus.SUCCESS))
    thread = threading.Thread(target=responder.serve, args=(stop,), name="cancel-receiver")
    thread.start()
    try:
        endpoint = Endpoint(port_a, profile)
        scanner = Scanner(endpoint)
        assert scanner._connect() is None
        table = endpoint.stack.commands
        request = table.make_request("cancel", 9, initiator="SCANNER", receiver="BRIDGE")
        endpoint.stack.send(request, endpoint.clock())
        answer = None
        for _ in range(200):
            for event in endpoint.poll(0.05):
                if hasattr(event, "message") and event.message is not None:
                    answer = event.message.command
            if answer is not None:
                break
        scanner.close(timeout=2.0)
    finally:
        stop.set()
        thread.join(timeout=30)
        port_a.close()
        port_b.close()
    assert answer is not None
    assert (answer.field, answer.status, answer.responded_to) == (0x8FFF, 0x0000, 9)


# ---------------------------------------------------------------- Recognition Codes


def test_recognition_codes_written_and_accepted(tmp_path: Path) -> None:
    old = app(recognition_code="ACR-NEMA 1.0", accepted_recognition_codes=["ACR-NEMA 1.0"])
    both = ["ACR-NEMA 1.0", "ACR-NEMA 2.0"]
    lenient = app(recognition_code="ACR-NEMA 1.0", accepted_recognition_codes=both)
    new_only = app(accepted_recognition_codes=["ACR-NEMA 2.0"])
    with link(old, lenient, tmp_path / "a") as (scanner, _r, seen):
        [ok] = scanner.send(phantom_images(1, rows=32))
    assert ok.ok and seen.messages[0].command.recognition_code == "ACR-NEMA 1.0"
    with link(lenient, new_only, tmp_path / "b") as (scanner, _r, seen):
        [refused] = scanner.send(phantom_images(1, rows=32))
    assert not refused.ok and not seen.messages
    assert "Recognition Code 'ACR-NEMA 1.0' is not accepted" in refused.errors[0]
    # the scanner's side checks the answers too: a 2.0 receiver's reply is refused
    with link(old, REFERENCE, tmp_path / "c") as (scanner, _r, seen):
        [answer_refused] = scanner.send(phantom_images(1, rows=32))
    assert not answer_refused.ok
    assert "response refused: Recognition Code 'ACR-NEMA 2.0'" in answer_refused.errors[0]


def test_a_profile_that_would_refuse_its_own_recognition_code_is_invalid() -> None:
    with pytest.raises(Exception, match=r"application\.recognition_code: not among"):
        app(accepted_recognition_codes=["ACR-NEMA 1.0"])


# ---------------------------------------------------------------- station ID length


def test_station_ids_are_written_with_the_profile_length(tmp_path: Path) -> None:
    fourteen = app(station_id_length=14)
    with link(fourteen, fourteen, tmp_path / "a", calling="CANPHIMR000000") as (
        scanner,
        _r,
        seen,
    ):
        [result] = scanner.send(phantom_images(1, rows=32))
    assert result.ok
    command = seen.messages[0].command
    assert command.initiator == "CANPHIMR000000" and command.receiver == "ACRNEMA_BRIDGE"
    raw = encode_message(
        fourteen_request := Endpoint(loop_pair()[0], fourteen).stack.commands.make_request(
            "echo", 1, initiator="CT", receiver="PACS"
        )
    )
    assert fourteen_request.command.initiator == "CT".ljust(14)
    assert b"CT            " in raw  # 14 characters on the wire
    # a longer ID: refused by the receiver, and refused locally by a scanner
    with link(REFERENCE, fourteen, tmp_path / "b", calling="SCANNER_ROOM_16") as (
        scanner,
        _r,
        seen,
    ):
        [long] = scanner.send(phantom_images(1, rows=32))
    assert not long.ok and not seen.messages
    assert "longer than 14 characters" in long.errors[0]
    port_a, port_b = loop_pair()
    try:
        with pytest.raises(LinkProtocolError, match="station_id_length"):
            Scanner(Endpoint(port_a, fourteen), calling="SCANNER_ROOM_16")
    finally:
        port_a.close()
        port_b.close()


# ---------------------------------------------------------------- the SPI group copy


@pytest.mark.parametrize("after", [False, True], ids=["data-in-send", "data-after-reply"])
def test_spi_group_copy_round_trip(tmp_path: Path, after: bool) -> None:
    profile = app(spi_commands=SPI, data_set_after_reply=after)
    images = phantom_images(3, rows=32)
    with link(profile, profile, tmp_path / "in") as (scanner, responder, seen):
        results = scanner.send(images)
    assert all(r.ok and r.attempts == 1 for r in results)
    assert received(tmp_path / "in") == [image.data for image in images]
    assert responder.stats.stored == 3 and responder.stats.unknown == 0
    assert {m.command.spi_command for m in seen.messages} == {0x0001}  # SENDq
    assert all(m.command.spi_recognition_code == "SPI Release 1" for m in seen.messages)


@pytest.mark.parametrize("after", [False, True], ids=["data-in-send", "data-after-reply"])
def test_a_receiver_told_to_stop_after_n_images_answers_the_group_end_first(
    tmp_path: Path, after: bool
) -> None:
    """``until`` (``emulate --role receiver --count N``) reached inside a group copy: the
    receiver still answers GCEND, so the scanner is told its images are stored."""
    profile = app(spi_commands=SPI, data_set_after_reply=after)
    images = phantom_images(2, rows=32)
    scanner_port, receiver_port = loop_pair()
    writer = FolderWriter(tmp_path / "in")
    responder = Responder(Endpoint(receiver_port, profile), writer)
    stop = threading.Event()
    thread = threading.Thread(
        target=responder.serve,
        args=(stop,),
        kwargs={"until": lambda: writer.count >= len(images)},
        name="knobs-receiver",
    )
    thread.start()
    try:
        scanner = Scanner(
            Endpoint(scanner_port, profile), calling="SCANNER", attempts=1, response_timeout=10.0
        )
        results = scanner.send(images)
        scanner.close(timeout=2.0)
        thread.join(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=30)
        scanner_port.close()
        receiver_port.close()
    assert [r.ok for r in results] == [True, True], [r.errors for r in results]
    assert received(tmp_path / "in") == [image.data for image in images]


def test_spi_group_end_fails_when_a_data_set_was_not_stored(tmp_path: Path) -> None:
    profile = app(spi_commands=SPI, data_set_after_reply=True)
    calls = []

    def second_fails(message: Message) -> Answer:
        calls.append(message)
        if len(calls) == 2:
            return Answer(LinkStatus.OUT_OF_RESOURCES, "disk full")
        return Answer(LinkStatus.SUCCESS)

    with link(profile, profile, tmp_path / "in", handler=second_fails) as (scanner, _r, _s):
        results = scanner.send(phantom_images(3, rows=32))
    assert len(calls) == 3  # each data set went to the handler as it came
    assert not any(r.ok for r in results)  # only GCEND acknowledges, and it failed
    assert all("gcend failed: out_of_resources A700H (disk full)" in r.errors[0] for r in results)


def test_spi_steps_out_of_order_are_refused(tmp_path: Path) -> None:
    profile = app(spi_commands=SPI)
    with link(profile, profile, tmp_path / "in") as (scanner, responder, seen):
        stack = scanner.endpoint.stack
        assert scanner._connect() is None
        send = scanner.table.make_spi_request(
            "send", stack.next_message_id(), initiator="S", receiver="B", data=b"\x08\x00" * 4
        )
        problem = scanner._ask(send, "send")
    assert problem is not None and "cannot_understand C000H (SPI command 0001H)" in problem
    assert not seen.messages and responder.stats.unknown == 1


def test_spi_commands_are_validated() -> None:
    with pytest.raises(Exception, match=r"application\.spi_commands: exactly gcbegin"):
        app(spi_commands={"gcbegin": [0x0028, 0x8028]})
    with pytest.raises(Exception, match=r"application\.data_set_after_reply: needs"):
        app(data_set_after_reply=True)
    with pytest.raises(Exception, match=r"application\.cancel_answer"):
        app(cancel_answer="maybe")
    with pytest.raises(Exception, match=r"application\.length_to_end_written: expected true"):
        app(length_to_end_written="yes")


# ---------------------------------------------------------------- the shipped profiles


def test_the_shipped_reference_profile_is_the_built_in_one() -> None:
    assert load_profile(PROFILES / "reference.toml") == REFERENCE
    # every key written out, so a site sees each knob it may change: `profile show` itself
    assert (PROFILES / "reference.toml").read_text() == to_toml(REFERENCE)


def test_every_shipped_profile_passes_profile_check(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in PROFILES.glob("*.toml"))
    assert len(files) >= 2
    assert main(["profile", "check", *files]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: ok" in out for name in files)


def _differing_keys(path: Path) -> list[str]:
    """The keys a profile file sets to something else than the reference (table entries
    one by one)."""
    data, profile = tomllib.loads(path.read_text()), load_profile(path)
    keys = []
    for section, table in data.items():
        if section == "name":
            continue
        for key, value in table.items():
            mine, ref = (
                getattr(getattr(profile, section), key),
                getattr(getattr(REFERENCE, section), key),
            )
            if isinstance(value, dict):
                keys += [f"{section}.{key}.{k}" for k in value if mine[k] != ref.get(k)]
            elif mine != ref:
                keys.append(f"{section}.{key}")
    return keys


def test_every_key_of_the_philips_profile_that_differs_names_its_evidence() -> None:
    path = PROFILES / "philips-spi-1993.toml"
    text = path.read_text()
    differing = _differing_keys(path)
    assert len(differing) >= 12
    for key in differing:
        leaf = key.rsplit(".", 1)[-1]
        [line] = [li for li in text.splitlines() if re.match(rf"{leaf}\s*=", li)]
        assert re.search(r"#.*\bN\d+\b", line), f"{key}: no evidence id in {line!r}"


def test_philips_spi_1993_emulator_round_trip(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "philips-spi-1993.toml")
    images = phantom_images(3, rows=64)
    with link(profile, profile, tmp_path / "in", calling="CANPHIMR000000") as (
        scanner,
        responder,
        seen,
    ):
        cancelled = scanner.cancel()
        results = scanner.send(images)
    assert cancelled == 0x0000
    assert all(r.ok for r in results)
    assert received(tmp_path / "in") == [image.data for image in images]
    command = seen.messages[0].command
    assert command.recognition_code == "ACR-NEMA 1.0" and command.length_to_end is not None
    assert command.initiator == "CANPHIMR000000"
    assert responder.stats.stored == 3


def test_philips_spi_1993_to_the_bridge_service(tmp_path: Path) -> None:
    profile = load_profile(PROFILES / "philips-spi-1993.toml")
    scanner_port, bridge_port = loop_pair()
    spool = Spool(tmp_path / "spool")
    bridge = Bridge(bridge_port, spool, [], profile=profile)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="spi-bridge")
    thread.start()
    try:
        scanner = Scanner(Endpoint(scanner_port, profile), attempts=1, response_timeout=30.0)
        results = scanner.send(phantom_images(2, rows=64))
        scanner.close(timeout=2.0)
    finally:
        stop.set()
        thread.join(timeout=60)
        scanner_port.close()
        bridge_port.close()
        spool.close()
    assert not thread.is_alive()
    assert all(r.ok for r in results), [r.errors for r in results]
    assert len(list((tmp_path / "spool" / "objects").rglob("*.dcm"))) == 2

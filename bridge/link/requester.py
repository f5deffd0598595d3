"""The requesting role of the link: sends images as store requests, as a scanner does.

:class:`Scanner` is the scanner role of ``acrnema-bridge emulate`` (and of the demo, the
benchmarks and the bench tests); its counterpart, the answering role, is
:mod:`bridge.link.responder`. It opens a connection (session CONNECT
with its logical address and the bridge's), sends each image as a store request (the
data set in the link's encoding: implicit VR, the profile's byte order), and waits for
each response before the next image, as 1980s equipment did. An image that fails (a
failure status, the link lost, no response in time) is resent, up to ``attempts``
times in all, on a new connection once the link is back; every failure is reported.

Under a profile with ``application.spi_commands`` (docs/link-profile.md, "Dialect knobs:
messages") the images go as one SPI group copy instead [evidence N3]: GCBEGIN with their
number, then READY and SEND for each (the data set in the SEND request, or after its
reply with ``application.data_set_after_reply``), then GCEND; only GCEND's success
acknowledges them, so a failure anywhere fails (and resends) the whole group.
:meth:`Scanner.cancel` sends CANCEL and waits for its answer when the profile says one
comes (``application.cancel_answer``).

Images come from ACR-NEMA files (:func:`load_images`: either byte order; re-encoded for
the link when their byte order differs) or from generated CT/MR phantoms
(:func:`bridge.testing.phantom.phantom_images`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bridge.acrnema.commands import Message
from bridge.acrnema.elements import IMPLICIT_BE, IMPLICIT_LE, Syntax, decode, encode
from bridge.acrnema.stack import (
    Aborted,
    Connected,
    LinkDown,
    MessageArrived,
    MessageUnreadable,
    Rejected,
    Released,
    StackEvent,
)
from bridge.errors import ConversionError
from bridge.lenient import lenient
from bridge.link.endpoint import Endpoint
from bridge.profile import LinkStatus

__all__ = ["Image", "ImageResult", "Scanner", "link_syntax", "load_images"]

log = logging.getLogger("bridge.emulator.scanner")  # the name users' log filters know


@dataclass(frozen=True)
class Image:
    """One image to send: a name for reports and its data set in the link's encoding."""

    name: str
    data: bytes


@dataclass
class ImageResult:
    """What became of one image."""

    name: str
    size: int
    ok: bool = False
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def link_syntax(byte_order: str) -> Syntax:
    """The link's encoding of a data set: implicit VR in ``byte_order`` (big or little)."""
    return IMPLICIT_BE if byte_order == "big" else IMPLICIT_LE


def load_images(
    paths: Iterable[Path], *, byte_order: str = "big"
) -> Iterator[Image | ConversionError]:
    """Images from ACR-NEMA files or folders of them (sorted); an unreadable file gives
    a :class:`ConversionError` naming it, and the rest go on."""
    want = link_syntax(byte_order)
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                yield ConversionError(f"cannot read: {exc.strerror or exc}", source=str(path))
                continue
            try:
                decoded = decode(raw, source=str(path))
                if decoded.syntax == want and decoded.start == 0:
                    data = raw
                else:
                    with lenient():
                        data = encode(decoded.dataset, want)
            except ConversionError as exc:
                yield exc
                continue
            except (ValueError, TypeError, OverflowError) as exc:
                yield ConversionError(f"cannot encode for the link: {exc}", source=str(path))
                continue
            yield Image(str(path), data)


class Scanner:
    """Sends images over an :class:`Endpoint`, one store request at a time."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        calling: str = "SCANNER",
        called: str = "ACRNEMA_BRIDGE",
        attempts: int = 3,
        response_timeout: float = 60.0,
        link_timeout: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self.calling, self.called = calling, called
        self.attempts = attempts
        self.response_timeout = response_timeout
        self.link_timeout = link_timeout
        self.table = endpoint.stack.commands
        for address in (calling, called):  # too long for application.station_id_length: say so now
            self.table.station(address)

    def _wait(self, until: Callable[[StackEvent], str | None], timeout: float) -> str | None:
        """Poll until ``until`` says something about an event (returned), or timeout."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            for event in self.endpoint.poll(min(left, 0.1)):
                said = until(event)
                if said is not None:
                    return said
        return None

    def _connect(self) -> str | None:
        """Open a connection if none is open; None on success, else the reason."""
        stack = self.endpoint.stack
        if stack.session.is_open:
            return None
        if not self.endpoint.port.wait_peer(self.link_timeout):
            return f"the bridge side is not READY after {self.link_timeout:g} s"
        quiet_end = time.monotonic() + self.endpoint.profile.session.abort_quiet_s + 1
        while stack.session.state.name == "QUIET" and time.monotonic() < quiet_end:
            self.endpoint.poll(0.05)
            stack = self.endpoint.stack

        def reply(event: StackEvent) -> str | None:
            if isinstance(event, Connected):
                return ""
            if isinstance(event, Rejected):
                return f"connection rejected: {event.text}"
            if isinstance(event, Aborted):
                return f"connection aborted: {event.text}"
            if isinstance(event, LinkDown):
                return f"link down while connecting: {event.reason}"
            return None

        try:
            stack.connect(self.calling, self.called, self.endpoint.clock())
        except Exception as exc:
            return f"cannot connect: {exc}"
        said = self._wait(reply, self.endpoint.profile.session.connect_timeout_s + 1)
        if said is None:
            return "no answer to CONNECT"
        return said or None

    def _store(self, image: Image) -> str | None:
        """One attempt; None on success, else why it failed."""
        problem = self._connect()
        if problem:
            return problem
        stack = self.endpoint.stack
        message_id = stack.next_message_id()
        request = self.table.make_request(
            "store", message_id, initiator=self.calling, receiver=self.called, data=image.data
        )
        return self._ask(request)

    def _ask(self, request: Message, what: str = "store", then: bytes = b"") -> str | None:
        """Send ``request`` and wait for its response: None on success, else why it failed
        (``what`` names the step); ``then``: a data set to send after a success reply."""
        stack = self.endpoint.stack
        message_id = request.command.message_id
        stack.send(request, self.endpoint.clock())

        def response(event: StackEvent) -> str | None:
            if isinstance(event, MessageArrived):
                command = event.message.command
                if command.is_response and command.responded_to == message_id:
                    if command.status == self.table.status(LinkStatus.SUCCESS):
                        return ""
                    name = self.table.status_name(command.status or 0)
                    comment = f" ({command.error_comment})" if command.error_comment else ""
                    return f"{what} failed: {name} {command.status or 0:04X}H{comment}"
            if isinstance(event, MessageUnreadable) and event.message is not None:
                command = event.message.command
                if command.is_response and command.responded_to == message_id:
                    return f"{what} response refused: {event.reason}"
            if isinstance(event, Aborted):
                if event.reason == 3:  # the link under the connection went down
                    return f"link down: {event.detail}"
                return f"connection aborted: {event.text}"
            if isinstance(event, LinkDown):
                return f"link down: {event.reason}"
            return None

        said = self._wait(response, self.response_timeout)
        if said is None:
            self.endpoint.abort(2)
            return f"no response within {self.response_timeout:g} s"
        if not said and then:
            stack.send_data_object(then, self.endpoint.clock())
        return said or None

    def _group_copy(self, images: list[Image]) -> str | None:
        """One attempt at an SPI group copy of ``images``; None when GCEND succeeded."""
        problem = self._connect()
        if problem:
            return problem
        stack, after = self.endpoint.stack, self.table.params.data_set_after_reply

        def step(name: str, data: bytes = b"", objects: int | None = None) -> str | None:
            request = self.table.make_spi_request(
                name,
                stack.next_message_id(),
                initiator=self.calling,
                receiver=self.called,
                data=b"" if after else data,
                data_follows=after and bool(data),
                objects=objects,
            )
            return self._ask(request, name, data if after else b"")

        said = step("gcbegin", objects=len(images))
        for image in images:
            said = said or step("ready") or step("send", image.data)
        return said or step("gcend")

    def cancel(self, timeout: float = 10.0) -> int | None:
        """Send CANCEL; the status of its answer, or None when none came within
        ``timeout`` (or the profile says none comes: ``application.cancel_answer``)."""
        if self._connect() is not None:
            return None
        stack = self.endpoint.stack
        message_id = stack.next_message_id()
        request = self.table.make_request(
            "cancel", message_id, initiator=self.calling, receiver=self.called
        )
        stack.send(request, self.endpoint.clock())
        if self.table.params.cancel_answer == "none":
            self.endpoint.drain(timeout)
            return None

        def response(event: StackEvent) -> str | None:
            if isinstance(event, MessageArrived):
                command = event.message.command
                if command.is_response and command.responded_to == message_id:
                    return str(command.status or 0)
            return None

        said = self._wait(response, timeout)
        return None if said is None else int(said)

    def send(
        self, images: Iterable[Image], progress: Callable[[ImageResult], None] | None = None
    ) -> list[ImageResult]:
        """Send every image; one result each, in order."""
        if self.table.params.spi_commands:
            return self._send_group(list(images), progress)
        results = []
        for image in images:
            result = ImageResult(image.name, len(image.data))
            start = time.monotonic()
            while result.attempts < self.attempts and not result.ok:
                result.attempts += 1
                problem = self._store(image)
                if problem is None:
                    result.ok = True
                else:
                    result.errors.append(problem)
                    log.warning("%s: attempt %d: %s", image.name, result.attempts, problem)
            result.seconds = time.monotonic() - start
            results.append(result)
            if progress is not None:
                progress(result)
        return results

    def _send_group(
        self, images: list[Image], progress: Callable[[ImageResult], None] | None
    ) -> list[ImageResult]:
        """Every image as one SPI group copy, the whole group tried up to ``attempts`` times."""
        results = [ImageResult(image.name, len(image.data)) for image in images]
        start = time.monotonic()
        attempts = 0
        while images and attempts < self.attempts and not results[0].ok:
            attempts += 1
            problem = self._group_copy(images)
            for result in results:
                result.attempts = attempts
                if problem is None:
                    result.ok = True
                else:
                    result.errors.append(problem)
            if problem is not None:
                log.warning("group copy of %d: attempt %d: %s", len(images), attempts, problem)
        for result in results:
            result.seconds = time.monotonic() - start
            if progress is not None:
                progress(result)
        return results

    def close(self, timeout: float = 5.0) -> None:
        """Release the connection, if open (best effort)."""
        stack = self.endpoint.stack
        if not stack.session.is_open:
            return
        stack.release(self.endpoint.clock())

        def released(event: StackEvent) -> str | None:
            return "" if isinstance(event, (Released, Aborted, LinkDown)) else None

        self._wait(released, timeout)

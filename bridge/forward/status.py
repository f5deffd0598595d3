"""What a DIMSE status means for a spooled object: DONE, RETRY or FAIL.

Every delivery attempt ends in one of three outcomes (the RSNA CTP model, STYLE.md rule
11): ``DONE`` (the destination has the object; the spool may let it go), ``RETRY`` (a
transient problem: try again later, with backoff) and ``FAIL`` (the object itself is
the problem: quarantine it with the reason). The retry limits, the backoff and the
quarantine belong to the forward loop; this module only classifies.

Status table for C-STORE responses (also used for N-ACTION and N-EVENT-REPORT
responses), first match wins:

==============  ======  ==============================================  ======================
Status          Result  Meaning                                         Source
==============  ======  ==============================================  ======================
0x0000          DONE    Success                                         PS3.7 C; PS3.4 B.2.3
0x0001          DONE    Warning: requested optional attributes not      PS3.7 10.1; C classes
                        supported
0x0107          DONE    Warning: attribute list error                   PS3.7 C
0x0116          DONE    Warning: attribute value out of range           PS3.7 C
0xB000          DONE    Warning: coercion of data elements              PS3.4 Table B.2-1
0xB006          DONE    Warning: elements discarded                     PS3.4 Table B.2-1
0xB007          DONE    Warning: data set does not match SOP Class      PS3.4 Table B.2-1
other 0xBxxx    DONE    Warning (Bxxx is the warning class)             PS3.7 C classes
0x0111          DONE    Duplicate SOP Instance: already stored (n. 1)   PS3.7 C; decision
0xA700-0xA7FF   RETRY   Refused: out of resources                       PS3.4 Table B.2-1
0x0213          RETRY   Refused: resource limitation                    PS3.7 C
0x0110          RETRY   Processing failure (n. 2)                       PS3.7 C; decision
0x0210          RETRY   Duplicate invocation (message ID reused)        PS3.7 C
0xFE00          RETRY   Cancel (a cancel is not a failure)              PS3.7 C classes
0xA900-0xA9FF   FAIL    Error: data set does not match SOP Class        PS3.4 Table B.2-1
0xC000-0xCFFF   FAIL    Error: cannot understand                        PS3.4 Table B.2-1
0x0117          FAIL    Invalid SOP Instance                            PS3.7 C
0x0118          FAIL    No such SOP Class                               PS3.7 C
0x0119          FAIL    Class-instance conflict                         PS3.7 C
0x0120, 0x0121  FAIL    Missing attribute / attribute value             PS3.7 C
0x0122          FAIL    Refused: SOP Class not supported                PS3.7 C
0x0124          FAIL    Refused: not authorized                         PS3.7 C
0x0105, 0x0106  FAIL    No such attribute / invalid attribute value     PS3.7 C
0x0112-0x0115   FAIL    No such object instance, event type or          PS3.7 C
                        argument; invalid argument value
0x0123          FAIL    No such action                                  PS3.7 C
0x0211, 0x0212  FAIL    Unrecognized operation / mistyped argument      PS3.7 C
0xFF00, 0xFF01  FAIL    Pending: never a final C-STORE response         PS3.7 C classes
anything else   FAIL    Unknown status (Axxx, Cxxx, 01xx, 02xx are      PS3.7 C classes
                        failure classes; other values are undefined)
==============  ======  ==============================================  ======================

Sources: "PS3.7 C" is PS3.7 Annex C, the general status codes (Status Type
Encoding); "C classes" is its table of status classes (success 0000; warning 0001,
Bxxx, 0107, 0116; failure Axxx, Cxxx, 01xx, 02xx; cancel FE00; pending FF00, FF01);
"PS3.7 10.1" is the N-GET and N-SET status lists; "PS3.4 Table B.2-1" is the Storage
Service Class C-STORE status table (PS3.4 B.2.3).

Notes (decisions, not standard text):

1. 0x0111 is a failure in PS3.7, but for a forwarder whose UIDs are deterministic
   (``bridge/dicom/uids.py``) a duplicate means an earlier attempt already arrived,
   e.g. before a crash; Orthanc treats it the same way. Retrying cannot change it.
2. 0x0110 "processing failure" says nothing about the cause; PACS return it for a
   locked database or a full disk as often as for a bad object. It is retried, so the
   forward loop's attempt limit decides when it becomes a quarantine.

Outcomes that have no DIMSE status (association refused or lost, no response within
the DIMSE timeout, a presentation context the destination refused) are built in
:mod:`bridge.forward.scu` with ``status=None``.

Association rejections (A-ASSOCIATE-RJ, PS3.8 9.3.4 and Table 9-21: Result, Source,
Reason/Diag.) are classified by :func:`classify_rejection`, first match wins:

======  ======================  =====================================  =========
Result  Source                  Reason                                 Class
======  ======================  =====================================  =========
any     3 service-provider      1 temporary-congestion,                transient
        (presentation)          2 local-limit-exceeded, reserved
1       1 service-user          1 no-reason-given, 2 application-      permanent
        (permanent)             context-name-not-supported, 3 calling-
                                AE-title-not-recognized, 7 called-AE-
                                title-not-recognized, reserved
1       2 service-provider      1 no-reason-given, 2 protocol-         permanent
        (ACSE)                  version-not-supported
2       any                     any                                    transient
other   any                     any                                    transient
======  ======================  =====================================  =========

A *permanent* rejection is one that trying again soon cannot change: the destination
itself says so (rejected-permanent), e.g. it does not know the AE title it was called
by. The forward loop then *holds* the destination (its objects wait, retried on a slow
schedule) rather than retrying every object on the usual backoff for ever. Decisions:
a presentation-related source names load, which passes, whatever the result says (DCMTK
answers "rejected-permanent, temporary-congestion" when it cannot fork); a value outside
the table, like every rejected-transient, is retried as before.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.errors import ForwardError

__all__ = [
    "ForwardError",
    "Outcome",
    "Rejection",
    "Result",
    "classify_rejection",
    "classify_status",
    "describe_status",
]


class Outcome(enum.Enum):
    """What the spool does with an object after a delivery attempt."""

    DONE = "done"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Result:
    """The outcome of delivering one object, with the DIMSE status if one came back.

    ``reason`` is text for people and logs, e.g. ``"0x0122 SOP Class not supported"``.
    ``lost`` marks the one object that was on the wire (being written, or awaiting its
    response) when the association was lost or timed out: the forward loop counts such
    attempts per object and quarantines an object the receiver keeps aborting on. A
    destination that is down, refuses the association or is stopped by the bridge
    never sets it.
    """

    outcome: Outcome
    status: int | None
    reason: str
    lost: bool = False
    hold: bool = False
    """A RETRY because the *destination* refused for a reason that trying again soon
    cannot change (association rejected-permanent, host name unknown): the forward loop
    holds the destination instead of retrying the object on its backoff."""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DONE


# (low, high, outcome, meaning): the module docstring's table, in the same order.
_DONE, _RETRY, _FAIL = Outcome.DONE, Outcome.RETRY, Outcome.FAIL
_TABLE: tuple[tuple[int, int, Outcome, str], ...] = (
    (0x0000, 0x0000, _DONE, "Success"),
    (0x0001, 0x0001, _DONE, "Warning: requested optional attributes not supported"),
    (0x0107, 0x0107, _DONE, "Warning: attribute list error"),
    (0x0116, 0x0116, _DONE, "Warning: attribute value out of range"),
    (0xB000, 0xB000, _DONE, "Warning: coercion of data elements"),
    (0xB006, 0xB006, _DONE, "Warning: elements discarded"),
    (0xB007, 0xB007, _DONE, "Warning: data set does not match SOP Class"),
    (0xB000, 0xBFFF, _DONE, "Warning"),
    (0x0111, 0x0111, _DONE, "Warning: duplicate SOP Instance (already stored)"),
    (0xA700, 0xA7FF, _RETRY, "Refused: out of resources"),
    (0x0213, 0x0213, _RETRY, "Refused: resource limitation"),
    (0x0110, 0x0110, _RETRY, "Processing failure"),
    (0x0210, 0x0210, _RETRY, "Duplicate invocation"),
    (0xFE00, 0xFE00, _RETRY, "Cancel"),
    (0xA900, 0xA9FF, _FAIL, "Error: data set does not match SOP Class"),
    (0xC000, 0xCFFF, _FAIL, "Error: cannot understand"),
    (0x0117, 0x0117, _FAIL, "Invalid SOP Instance"),
    (0x0118, 0x0118, _FAIL, "No such SOP Class"),
    (0x0119, 0x0119, _FAIL, "Class-instance conflict"),
    (0x0120, 0x0120, _FAIL, "Missing attribute"),
    (0x0121, 0x0121, _FAIL, "Missing attribute value"),
    (0x0122, 0x0122, _FAIL, "SOP Class not supported"),
    (0x0124, 0x0124, _FAIL, "Not authorized"),
    (0x0105, 0x0105, _FAIL, "No such attribute"),
    (0x0106, 0x0106, _FAIL, "Invalid attribute value"),
    (0x0112, 0x0112, _FAIL, "No such object instance"),
    (0x0113, 0x0113, _FAIL, "No such event type"),
    (0x0114, 0x0114, _FAIL, "No such argument"),
    (0x0115, 0x0115, _FAIL, "Invalid argument value"),
    (0x0123, 0x0123, _FAIL, "No such action"),
    (0x0211, 0x0211, _FAIL, "Unrecognized operation"),
    (0x0212, 0x0212, _FAIL, "Mistyped argument"),
    (0xFF00, 0xFF01, _FAIL, "Pending status as a final response"),
)


def _lookup(status: int) -> tuple[Outcome, str]:
    for low, high, outcome, meaning in _TABLE:
        if low <= status <= high:
            return outcome, meaning
    return Outcome.FAIL, "Unknown status"


def describe_status(status: int) -> str:
    """``"0x0122 SOP Class not supported"``: the code and its meaning from the table."""
    return f"0x{status:04X} {_lookup(status)[1]}"


def classify_status(status: int) -> Result:
    """The outcome of a DIMSE response ``status`` (see the table in the module docstring)."""
    if not 0 <= status <= 0xFFFF:
        raise ValueError(f"a DIMSE status is 16 bits, not {status!r}")
    outcome, meaning = _lookup(status)
    return Result(outcome, status, f"0x{status:04X} {meaning}")


# PS3.8 Table 9-21: (source, reason) -> the standard's name for the reason
_RJ_SOURCES = {
    1: "service-user",
    2: "service-provider (ACSE)",
    3: "service-provider (presentation)",
}
_RJ_REASONS = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-AE-title-not-recognized",
    (1, 7): "called-AE-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}
_RJ_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ, classified (module docstring, second table)."""

    permanent: bool
    text: str
    """``"rejected-permanent, service-user: called-AE-title-not-recognized"``."""


def classify_rejection(result: int, source: int, reason: int) -> Rejection:
    """Whether an association rejection is permanent, with its fields in PS3.8's words."""
    text = (
        f"{_RJ_RESULTS.get(result, f'result {result}')}, "
        f"{_RJ_SOURCES.get(source, f'source {source}')}: "
        f"{_RJ_REASONS.get((source, reason), f'reason {reason}')}"
    )
    permanent = result == 1 and source in (1, 2)
    return Rejection(permanent, text)

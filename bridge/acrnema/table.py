"""The one state-table idiom of every protocol machine (STYLE rules 2 and 14).

A machine's rules are one :class:`Table`: ``(state, input) -> Rule(action, next_state,
description)``, in one place per machine, named after the standard (pynetdicom's
``fsm.py``, h11's ``_state.py``). The *action* is what the machine does (an enum member
or a callable, never a string that doubles as a dispatch key); the *description* is
the words the docs show, kept apart from it. A pair not in the table is a protocol
error of the layer: :meth:`Table.rule` raises the layer's error, local (a call of the
layer's user) or remote (input from the peer), as the caller says.

A rule that depends on a condition (a *guard*: "retries left", "the last REPLY
awaited") is written as two inputs, the condition in their names, that the machine
tells apart before it looks the rule up; so the table still holds every rule, one per
pair, and a test that walks every ``(state, input)`` pair walks every guard too.

The docs' diagrams are rendered from the tables (:func:`state_diagram`, Mermaid, and
:func:`markdown_table`), and tests compare the docs with the rendered text, so the docs
cannot drift from the code. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["ProtocolErrorFactory", "Rule", "Table", "markdown_table", "state_diagram"]

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741  (S, I, A: state, input, action)
A = TypeVar("A")

ProtocolErrorFactory = Callable[[str, bool], Exception]
"""``(reason, remote) -> the layer's protocol error`` for a pair not in a table."""


@dataclass(frozen=True)
class Rule(Generic[S, A]):
    """What a machine does on one input in one state, and the state it goes to."""

    action: A
    next_state: S
    description: str

    def __iter__(self) -> Iterator[object]:
        """``action, next_state = rule``, as the tables' tuples unpacked before."""
        yield self.action
        yield self.next_state


class Table(Mapping[tuple[S, I], Rule[S, A]], Generic[S, I, A]):
    """A machine's rules: ``(state, input) -> Rule``; a missing pair is a protocol error.

    ``states`` and ``inputs`` are the machine's enums (the walk over every pair is their
    product); ``error`` makes the layer's protocol error for a missing pair, its reason
    ``reason`` formatted with the input's and the state's values and the ``where`` given
    to :meth:`rule` (formatted only then: a lookup costs one dict access).
    """

    def __init__(
        self,
        name: str,
        states: type[S],
        inputs: type[I],
        rules: Mapping[tuple[S, I], Rule[S, A]],
        error: ProtocolErrorFactory,
        *,
        reason: str = "{input} while {state}",
    ) -> None:
        for state, cause in rules:
            if not isinstance(state, states) or not isinstance(cause, inputs):
                raise TypeError(f"{name}: ({state!r}, {cause!r}) is not a {states.__name__} pair")
        self.name = name
        self.states = states
        self.inputs = inputs
        self._rules = dict(rules)
        self._error = error
        self._reason = reason

    def __getitem__(self, key: tuple[S, I]) -> Rule[S, A]:
        return self._rules[key]

    def __iter__(self) -> Iterator[tuple[S, I]]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def rule(self, state: S, cause: I, *, remote: bool = False, where: object = "") -> Rule[S, A]:
        """The rule for ``cause`` in ``state``; a pair not in the table raises the
        layer's protocol error (``remote``: the input came from the peer) with the
        table's ``reason`` (``where``: which frame, port or device, if it says)."""
        try:
            return self._rules[state, cause]
        except KeyError:
            text = self._reason.format(input=cause.value, state=state.value, where=where)
            raise self._error(text, remote) from None

    def pairs(self) -> Iterator[tuple[S, I]]:
        """Every ``(state, input)`` pair of the machine, in the tables' and enums' order."""
        for state in self.states:
            for cause in self.inputs:
                yield state, cause


def _name(action: Any) -> str:
    if isinstance(action, enum.Enum):
        return action.name
    return str(getattr(action, "__name__", action))


def state_diagram(table: Table[Any, Any, Any]) -> str:
    """A Mermaid ``stateDiagram-v2`` of a table: one line per rule,
    ``STATE --> NEXT: input / description``."""
    lines = ["stateDiagram-v2"]
    for (state, cause), rule in table.items():
        lines.append(
            f"    {state.name} --> {rule.next_state.name}: {cause.value} / {rule.description}"
        )
    return "\n".join(lines)


def markdown_table(table: Table[Any, Any, Any]) -> str:
    """A table as a Markdown table: state, input, action, next state, what it does; a
    last line says that every other pair is a protocol error."""
    lines = [
        "| state | input | action | next state | what happens |",
        "|---|---|---|---|---|",
    ]
    for (state, cause), rule in table.items():
        lines.append(
            f"| {state.name} | {cause.value} | `{_name(rule.action)}` "
            f"| {rule.next_state.name} | {rule.description} |"
        )
    missing = sum(1 for pair in table.pairs() if pair not in table)
    lines.append("")
    lines.append(f"Every other pair ({missing} of them) is a protocol error.")
    return "\n".join(lines) + "\n"

"""Hypothesis strategies for any protobuf message, built from its descriptor.

Every field of every message gets a strategy from its type alone (strings with control characters
and unicode, integers at their limits, NaN and infinities, enum numbers no one declared, huge
repeated fields, nested messages), so a field or an RPC added to ``protos/`` is fuzzed without
writing anything. ``Targets`` replaces the generic strategy of the fields where the interesting
values are not random ones (a task, a run id that exists, a page token a server gave out) by
field name, or by ``Message.field`` for one message only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# Past this depth nested messages are left empty: requests are shallow, and deep trees only cost time.
MAX_DEPTH = 3

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

_SIGNED32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_SIGNED64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UNSIGNED32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_UNSIGNED64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}

# Characters that break naive handling: NUL and other controls, bidi overrides, a BOM, combining
# marks, characters outside the BMP, line and paragraph separators.
NASTY_CHARS = "\x00\x01\x07\x08\x1b\x7f\t\r\n\x0b\x0c\u0085\u00a0\u200b\u200e\u202e\u2028\u2029\ufeff\u0301\U0001f600"
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "\t\n\r",
    "' OR 1=1 --",
    '"; DROP TABLE runs; --',
    "%s%n%x{0}{}",
    "../../etc/passwd",
    "\u202egnp.exe",
    "null",
    "NaN",
    "-1",
    "0",
    "🐝" * 50,
]


def texts(max_size: int = 200) -> st.SearchStrategy[str]:
    """Any text protobuf can carry (no lone surrogates), biased towards the troublesome."""
    return st.one_of(
        st.sampled_from(NASTY_STRINGS),
        st.text(max_size=max_size),
        st.text(alphabet=st.sampled_from(NASTY_CHARS + "ab _"), max_size=max_size),
        st.integers(1_000, 120_000).map(lambda n: "x" * n),
    )


def integers(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    edges = sorted({low, low + 1, -1 if low < 0 else 0, 0, 1, 2, high - 1, high})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def doubles(width: Literal[32, 64] = 64) -> st.SearchStrategy[float]:
    specials = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-300, -1.0, 1.0, 1e300]
    return st.one_of(st.sampled_from(specials), st.floats(width=width, allow_nan=True, allow_infinity=True))


def enum_numbers(descriptor: EnumDescriptor) -> st.SearchStrategy[int]:
    """Declared values mostly; proto3 enums are open, so any int32 may arrive on the wire."""
    return st.one_of(st.sampled_from([v.number for v in descriptor.values]), integers(INT32))


def huge_lists(element: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """Thousands of one value: cheap to make, and what a hostile caller sends to cost memory and time."""
    return st.tuples(element, st.integers(500, 5_000)).map(lambda pair: [pair[0]] * pair[1])


Strategy = st.SearchStrategy[Any]
# A targeted strategy may depend on the server's state (ids it created), so it is built lazily.
Target = Strategy | Callable[[], Strategy]


@dataclass
class Targets:
    """Strategies that replace the generic one of a field, keyed ``"field"`` or ``"Message.field"``.

    A target for a repeated field draws the whole list.
    """

    fields: Mapping[str, Target] = field(default_factory=dict)

    def for_field(self, descriptor: FieldDescriptor) -> Strategy | None:
        owner = descriptor.containing_type
        target = self.fields.get(f"{owner.name}.{descriptor.name}") if owner is not None else None
        if target is None:
            target = self.fields.get(descriptor.name)
        if target is None or isinstance(target, st.SearchStrategy):
            return target
        return st.deferred(target)


def messages(
    descriptor: Descriptor, targets: Targets | None = None, *, complete: bool = False
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type, each field drawn by its strategy; a field is present or
    absent at random, or, ``complete``, always present (requests that get past "X is missing")."""
    return _message(descriptor, targets or Targets(), 0, complete)


def _message(
    descriptor: Descriptor, targets: Targets, depth: int, complete: bool = False
) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(descriptor)
    if depth > MAX_DEPTH:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for fd in descriptor.fields:
            if not complete and not draw(st.booleans()):
                continue
            _set(message, fd, draw(_field(fd, targets, depth, complete)))
        return message

    return build()


def _field(fd: FieldDescriptor, targets: Targets, depth: int, complete: bool) -> Strategy:
    targeted = targets.for_field(fd)
    if targeted is not None:
        return targeted
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        key, value = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
        return st.dictionaries(_scalar(key, targets, depth), _scalar(value, targets, depth), max_size=4)
    element = _scalar(fd, targets, depth, complete)
    if fd.is_repeated:
        # Thousands of small entries: many, not big (a thousand huge strings is only a memory test of the fuzzer).
        return st.one_of(st.lists(element, max_size=4), huge_lists(_small(fd)))
    return element


def _small(fd: FieldDescriptor) -> Strategy:
    """An entry of a huge list: short strings, and of a message only its short scalar fields."""
    if fd.message_type is not None:
        descriptor = fd.message_type
        cls = message_factory.GetMessageClass(descriptor)
        scalars = [f for f in descriptor.fields if f.message_type is None and not f.is_repeated]

        @st.composite
        def build(draw: st.DrawFn) -> Message:
            message = cls()
            for scalar in scalars:
                if draw(st.booleans()):
                    setattr(message, scalar.name, draw(_small(scalar)))
            return message

        return build()
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    return _scalar(fd, Targets(), MAX_DEPTH)


def _scalar(fd: FieldDescriptor, targets: Targets, depth: int, complete: bool = False) -> Strategy:
    kind = fd.type
    if fd.message_type is not None:
        return _message(fd.message_type, targets, depth + 1, complete)
    if kind == FieldDescriptor.TYPE_STRING:
        return texts()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=200)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.enum_type is not None:
        return enum_numbers(fd.enum_type)
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return doubles()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return doubles(width=32)
    if kind in _SIGNED32:
        return integers(INT32)
    if kind in _SIGNED64:
        return integers(INT64)
    if kind in _UNSIGNED32:
        return integers(UINT32)
    if kind in _UNSIGNED64:
        return integers(UINT64)
    raise TypeError(f"no strategy for field {fd.full_name} of type {kind}")


def _set(message: Message, fd: FieldDescriptor, value: Any) -> None:
    target = getattr(message, fd.name)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif fd.is_repeated:
        if fd.message_type is not None:
            target.extend(value)
        else:
            target[:] = value
    elif fd.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, fd.name, value)


def timestamps() -> st.SearchStrategy[Message]:
    """Times a client may mean (any year 1..9999, UTC), and raw seconds and nanos no calendar holds."""

    def at(moment: dt.datetime) -> Message:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(moment)
        return stamp

    valid = st.datetimes(timezones=st.just(dt.UTC)).map(at)
    return st.one_of(valid, messages(timestamp_pb2.Timestamp.DESCRIPTOR))

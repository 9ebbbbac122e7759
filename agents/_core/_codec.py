"""A table-driven JSON codec: each wire record is declared once, as a :class:`Record`.

:func:`record` derives a record from an attrs class: one wire field per attribute,
its :class:`Shape` from the annotation, its presence from the default (no default:
required; ``X | None`` without default: sent even when null; a default: optional,
omitted when None). A small per-class table says the rest: wire names that differ,
the wire order, constants, and rules that span fields (:class:`PresentIff`,
:class:`OneOf`). Encoding, decoding and the JSON Schema (``_schema.py``) all come
from that one declaration, so they cannot drift apart. A :class:`TaggedUnion`
dispatches on the ``type`` tag.

Every record compiles its declaration into flat plans when it is built: encoding
and decoding only walk tuples, with no reflection per call, because encoding runs
for every event the runtime commits.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any, Final, Generic, TypeVar, cast, get_args

import attrs
from attrs import field, frozen

from sessions import JSONObject

from ._fields import kind
from ._shapes import (
    ANY,
    BOOLEAN,
    INTEGER,
    MAPPING,
    NUMBER,
    OBJECT,
    STRING,
    STRINGS,
    Inner,
    Mismatch,
    Refused,
    Shape,
    array_of,
    choice,
    fail,
    nested,
)

T = TypeVar("T")

# How a field is written and read.
_REQUIRED: Final = 0  # always written; must be present and not null
_OPTIONAL: Final = 1  # omitted when None (or empty, with omit_empty); absent or null: default
_NULLABLE: Final = 2  # always written, null included; absent or null: None
_CONSTANT: Final = 3  # a fixed value with no attribute


@frozen
class Field:
    """One wire field of a record (built by :func:`record`)."""

    key: str  # the name on the wire
    shape: Shape
    attr: str | None  # the attribute; None for a constant
    mode: int
    default: Any = None
    factory: Callable[[], Any] | None = None
    omit_empty: bool = False  # also omitted when empty or false (not only None)
    null_last: bool = False  # a null is written after every other key
    must_send: bool = False  # a nullable field that may not be absent
    null_ok: bool = False  # optional, and a sender may send null (decoded as absent)

    @property
    def sends_null(self) -> bool:
        return self.mode == _NULLABLE or self.null_ok or self.shape.null_ok


def _constant(key: str, value: str) -> Field:
    shape = Shape(repr(value), {"const": value}, lambda v: v if v == value else fail())
    return Field(key, shape, None, _CONSTANT, value)


@frozen
class PresentIff:
    """Field *key* is present exactly when field *on* equals *value*."""

    key: str
    on: str
    value: str
    missing: str  # the message when it is absent but required
    extra: str  # the message when it is present but not allowed


@frozen
class OneOf:
    """Exactly one of *keys* is present (null counts as present only where it is a value)."""

    keys: tuple[str, ...]


Rule = PresentIff | OneOf


def _field_error(data: JSONObject, f: Field) -> Refused:
    if f.key not in data:
        if f.must_send:
            return Refused(f"missing field {f.key!r} ({f.shape.expected}, or null)")
        return Refused(f"missing field {f.key!r} (expected {f.shape.expected})")
    got = kind(data[f.key])
    return Refused(f"field {f.key!r} must be {f.shape.expected}, got {got}")


# Encoding steps: (key, attr, write, how); see Record._plan_writes.
_W_VALUE: Final = 0  # write the value, null included
_W_NOT_NONE: Final = 1
_W_NOT_EMPTY: Final = 2
_W_CONSTANT: Final = 3
_W_ONLY_NONE: Final = 4
_W_WHEN: Final = 5  # write (null included) when the predicate holds


@frozen
class Record(Generic[T]):
    """The wire declaration of class *cls*: its fields in wire order and its rules."""

    cls: type[T]
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    closed: bool = False  # unknown keys are refused (commands); else ignored
    _encode: Callable[[Any, JSONObject], None] = field(init=False, repr=False, eq=False)
    _steps: tuple[tuple[Any, ...], ...] = field(init=False, repr=False, eq=False)
    _allowed: frozenset[str] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_allowed", self.keys | {"type"})  # the union's tag
        object.__setattr__(self, "_encode", self._plan_writes())
        object.__setattr__(self, "_steps", self._plan_reads())

    @property
    def type(self) -> str:
        tag: str = getattr(self.cls, "type", "")
        return tag

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(f.key for f in self.fields)

    def encode(self, obj: T, out: JSONObject | None = None) -> JSONObject:
        """The wire fields of *obj*, added to *out* (a new object by default)."""
        if out is None:
            out = {}
        self._encode(obj, out)
        return out

    def decode(self, data: JSONObject, where: str) -> T:
        """The value *data* describes (unknown keys are ignored here).

        Raises:
            ValueError: a field is missing or wrong, or a rule is broken; the
                message starts with *where* and names the field.
        """
        try:
            return self.decode_fields(data)
        except Refused as refused:
            raise ValueError(f"{where}: {refused}") from None

    # -- plans ---------------------------------------------------------------------

    def _plan_writes(self) -> Callable[[Any, JSONObject], None]:
        fields = [f for f in self.fields if f.attr is not None]
        getter = _getter(tuple(f.attr or "" for f in fields))
        keys = tuple(f.key for f in fields)
        if self.rules or len(fields) != len(self.fields):
            pass
        elif all(f.mode == _NULLABLE and f.shape.write is None for f in fields):
            # Every value written as it is: one C-level zip.
            def encode_all(obj: Any, out: JSONObject) -> None:
                out.update(zip(keys, getter(obj), strict=True))

            return encode_all
        elif all(
            f.mode in (_REQUIRED, _OPTIONAL) and not f.omit_empty and f.shape.write is None
            for f in fields
        ):
            # Required values are never None, so dropping every None is exact.
            def encode_present(obj: Any, out: JSONObject) -> None:
                for key, value in zip(keys, getter(obj), strict=True):
                    if value is not None:
                        out[key] = value

            return encode_present
        steps = self._general_steps()

        def encode(obj: Any, out: JSONObject) -> None:
            for key, attr, write, how in steps:
                if how == _W_CONSTANT:
                    out[key] = write
                    continue
                value = getattr(obj, attr)
                if value is None:
                    if how in (_W_VALUE, _W_ONLY_NONE) or (how == _W_WHEN and write(obj)):
                        out[key] = None
                    continue
                if how == _W_ONLY_NONE or (how == _W_NOT_EMPTY and not value):
                    continue
                if how == _W_WHEN:
                    if write(obj):
                        out[key] = value
                    continue
                out[key] = value if write is None else write(value)

        return encode

    def _general_steps(self) -> tuple[tuple[Any, ...], ...]:
        by_key = {f.key: f for f in self.fields}
        when: dict[str, Callable[[Any], bool]] = {}
        for rule in self.rules:
            if isinstance(rule, PresentIff):
                when[rule.key] = _equals(by_key[rule.on].attr or "", rule.value)
            else:
                # The member that may be null is written when every other one is None.
                others = [by_key[k].attr or "" for k in rule.keys if not by_key[k].shape.null_ok]
                for key in rule.keys:
                    if by_key[key].shape.null_ok:
                        when[key] = _all_none(others)
        steps: list[tuple[Any, ...]] = []
        trailing: list[tuple[Any, ...]] = []
        for f in self.fields:
            if f.mode == _CONSTANT:
                steps.append((f.key, None, f.default, _W_CONSTANT))
            elif f.key in when:
                steps.append((f.key, f.attr, when[f.key], _W_WHEN))
            elif f.null_last:
                steps.append((f.key, f.attr, f.shape.write, _W_NOT_NONE))
                trailing.append((f.key, f.attr, None, _W_ONLY_NONE))
            elif f.mode == _OPTIONAL:
                how = _W_NOT_EMPTY if f.omit_empty else _W_NOT_NONE
                steps.append((f.key, f.attr, f.shape.write, how))
            else:
                steps.append((f.key, f.attr, f.shape.write, _W_VALUE))
        return tuple(steps + trailing)

    def _plan_reads(self) -> tuple[tuple[Any, ...], ...]:
        return tuple(
            (f.key, f.attr, f.shape.fast, f.shape.read, f.mode, f.default, f.factory, f)
            for f in self.fields
        )

    def decode_fields(self, data: JSONObject) -> T:
        """:meth:`decode` without the location.

        Raises:
            Refused: as :meth:`decode`, the message without the location.
        """
        if self.closed:
            unknown = sorted(data.keys() - self._allowed)
            if unknown:
                raise Refused(f"unknown field(s) {', '.join(map(repr, unknown))}")
        values: dict[str, Any] = {}
        for key, attr, fast, read, mode, default, factory, f in self._steps:
            value = data.get(key)
            if value is None:
                if mode == _REQUIRED or (f.must_send and key not in data):
                    raise _field_error(data, f)
                if attr is not None:
                    values[attr] = default if factory is None else factory()
                continue
            if value.__class__ not in fast:
                try:
                    value = read(value)
                except Mismatch:
                    raise _field_error(data, f) from None
                except Inner as inner:
                    raise Refused(f"{key}{inner}") from None
                except ValueError as error:
                    raise Refused(str(error)) from None
            if attr is not None:
                values[attr] = value
        for rule in self.rules:
            self._check(rule, data)
        try:
            return self.cls(**values)
        except ValueError as error:  # an invariant of the class itself
            raise Refused(str(error)) from None

    def _check(self, rule: Rule, data: JSONObject) -> None:
        by_key = {f.key: f for f in self.fields}

        def present(key: str) -> bool:
            return key in data and (data[key] is not None or by_key[key].shape.null_ok)

        if isinstance(rule, PresentIff):
            wanted = data.get(rule.on) == rule.value
            if wanted and not present(rule.key):
                raise Refused(rule.missing)
            if not wanted and present(rule.key):
                raise Refused(rule.extra)
        elif sum(present(key) for key in rule.keys) != 1:
            names = " or ".join(repr(key) for key in rule.keys)
            raise Refused(f"exactly one of {names} is required")


def _equals(attr: str, value: str) -> Callable[[Any], bool]:
    return lambda obj: bool(getattr(obj, attr) == value)


def _all_none(attrs: list[str]) -> Callable[[Any], bool]:
    return lambda obj: all(getattr(obj, attr) is None for attr in attrs)


def _getter(attrs: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(attrs) == 1:
        (only,) = attrs
        return lambda obj: (getattr(obj, only),)
    if not attrs:
        return lambda obj: ()
    getter: Callable[[Any], tuple[Any, ...]] = attrgetter(*attrs)
    return getter


@frozen
class TaggedUnion(Generic[T]):
    """Records told apart by their class's ``type`` tag."""

    records: tuple[Record[Any], ...]
    by_type: dict[str, Record[Any]] = field(init=False, eq=False, repr=False)
    by_class: dict[type, Record[Any]] = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "by_type", {r.type: r for r in self.records})
        object.__setattr__(self, "by_class", {r.cls: r for r in self.records})
        if len(self.by_type) != len(self.records):
            raise ValueError("two records share a type tag")


_SCALARS: Final = {
    "str": STRING,
    "int": INTEGER,
    "float": NUMBER,
    "bool": BOOLEAN,
    "JSONObject": OBJECT,
    "JSON": ANY,
    "Mapping[str, JSON]": MAPPING,
    "tuple[str, ...]": STRINGS,
}
_RECORDS: dict[type, Record[Any]] = {}  # derived records, for nested values


def _shape_for(annotation: str, owner: type) -> Shape:
    """The shape of an attribute annotated *annotation* (a string: postponed annotations).

    Raises:
        TypeError: no shape fits; declare one with ``record(shapes=...)``.
    """
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    scope = vars(sys.modules[owner.__module__])
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        item = scope.get(annotation[len("tuple[") : -len(", ...]")])
        if isinstance(item, type) and item in _RECORDS:
            return array_of(item.__name__, _RECORDS[item].decode_fields, _RECORDS[item].encode)
    target = scope.get(annotation)
    if isinstance(target, type) and target in _RECORDS:
        return nested(target.__name__, _RECORDS[target].decode_fields, _RECORDS[target].encode)
    options = get_args(target)  # a Literal alias
    if options and all(isinstance(option, str) for option in options):
        return choice(options)
    raise TypeError(f"{owner.__name__}: no wire shape for annotation {annotation!r}")


def record(
    cls: type[T],
    *,
    keys: Mapping[str, str] | None = None,
    order: tuple[str, ...] = (),
    constants: Mapping[str, str] | None = None,
    shapes: Mapping[str, Shape] | None = None,
    always: tuple[str, ...] = (),
    null_last: tuple[str, ...] = (),
    omit_empty: tuple[str, ...] = (),
    null_ok: tuple[str, ...] = (),
    rules: tuple[Rule, ...] = (),
    closed: bool = False,
) -> Record[T]:
    """The record of attrs class *cls*, derived from its attributes (once, at import).

    *keys* maps attributes to wire names that differ; *order* lists every wire key
    when the wire order is not the attributes'; *constants* are wire-only keys with
    a fixed value; *shapes* overrides derived shapes (by attribute); *always* are
    defaulted attributes sent even when None; *null_last* are those whose null
    goes after every other key; *omit_empty* are omitted when empty or false;
    *null_ok* are optional ones a sender may also send as null.
    *closed*: unknown keys are refused, and a nullable attribute without default
    must be sent (a command).
    """
    keys, constants, shapes = keys or {}, constants or {}, shapes or {}
    fields: dict[str, Field] = {}
    for a in attrs.fields(cast(Any, cls)):
        key = keys.get(a.name, a.name)
        annotation = str(a.type)
        sends_none = annotation.endswith(" | None")
        base = annotation.removesuffix(" | None")
        shape = shapes.get(a.name) or _shape_for(base, cls)
        if a.name in always or a.name in null_last:
            fields[key] = Field(key, shape, a.name, _NULLABLE, null_last=a.name in null_last)
        elif a.default is attrs.NOTHING:
            mode = _NULLABLE if sends_none else _REQUIRED
            fields[key] = Field(key, shape, a.name, mode, must_send=sends_none and closed)
        else:
            is_factory = isinstance(a.default, attrs.Factory)  # type: ignore[arg-type]
            fields[key] = Field(
                key,
                shape,
                a.name,
                _OPTIONAL,
                default=None if is_factory else a.default,
                factory=a.default.factory if is_factory else None,
                omit_empty=a.name in omit_empty,
                null_ok=a.name in null_ok,
            )
    for key, value in constants.items():
        fields[key] = _constant(key, value)
    if order:
        if sorted(order) != sorted(fields):
            raise TypeError(f"{cls.__name__}: order must list exactly {sorted(fields)}")
        fields = {key: fields[key] for key in order}
    derived = Record(cls, tuple(fields.values()), rules, closed)
    _RECORDS[cls] = derived
    return derived

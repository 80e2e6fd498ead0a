"""The metaclass of message classes: msgspec structs whose defaults belong to the constructor only.

Messages are ``msgspec.Struct`` classes, so that the codec decodes a frame straight into them in C,
checking every field's type as it goes. msgspec fills a missing trailing field of an array-like
struct from its default, but the protocol rejects a message that lacks a field: a peer with
another schema must fail loudly, not have its message completed with zeros. So ``StructMeta``
takes the defaults out of the class body before msgspec sees it (to msgspec, and so to the
decoder, every field is required) and puts them in a constructor generated for each class, as
``dataclasses`` generates ``__init__``: ``Task(task_id, function_id, function, args, attempt)``
still fills the rest. Type checkers read the class body, defaults and all.

Each class also gets ``__dataclass_fields__``, so ``dataclasses.fields``, ``replace`` and
``asdict`` keep working on messages, as they did when messages were dataclasses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

_FIELD = type(msgspec.field())
_MISSING = object()  # an argument left out, for fields whose default comes from a factory
_PLAIN_FIELD = dataclasses._FIELD  # type: ignore[attr-defined]  # a field, not a ClassVar or InitVar


def _is_class_variable(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _constructor(cls: type, defaults: dict[str, Any]) -> Callable[..., Any]:
    """A ``__call__`` for ``cls``'s own metaclass: the signature of its fields and their defaults.

    Generated, like a dataclass's ``__init__``, and installed as the metaclass's ``__call__`` so
    that building a message costs one Python call, as a dataclass does: tasks and results are
    built on every hop.
    """
    fields: tuple[str, ...] = cls.__struct_fields__  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"_new_": msgspec.StructMeta.__call__, "_MISSING_": _MISSING}
    parameters = ["_cls_"]
    values = ["_cls_"]
    for index, name in enumerate(fields):
        if name not in defaults:
            parameters.append(name)
            values.append(name)
            continue
        default = defaults[name]
        if isinstance(default, _FIELD) and default.default_factory is not msgspec.NODEFAULT:
            namespace[f"_factory{index}_"] = default.default_factory
            parameters.append(f"{name}=_MISSING_")
            values.append(f"_factory{index}_() if {name} is _MISSING_ else {name}")
        else:
            namespace[f"_default{index}_"] = default.default if isinstance(default, _FIELD) else default
            parameters.append(f"{name}=_default{index}_")
            values.append(name)
    source = f"def {cls.__name__}({', '.join(parameters)}):\n    return _new_({', '.join(values)})"
    exec(source, namespace)  # noqa: S102 - the source is made above from the class's field names only
    construct: Callable[..., Any] = namespace[cls.__name__]
    return construct


def _dataclass_fields(cls: type, defaults: dict[str, Any]) -> dict[str, dataclasses.Field[Any]]:
    """``dataclasses.Field`` objects for ``cls``'s fields, as ``dataclasses.make_dataclass`` would make them.

    Built directly: ``make_dataclass`` generates and compiles ``__init__``, ``__repr__`` and
    ``__eq__`` for a class that is thrown away, which was two thirds of importing the messages
    (50 of 72 ms, in every process, on start-up's path). ``test_protocol_structs`` checks these
    fields equal ``make_dataclass``'s for every message.
    """
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    fields: dict[str, dataclasses.Field[Any]] = {}
    for name in cls.__struct_fields__:  # type: ignore[attr-defined]
        default = defaults.get(name, _MISSING)
        if default is _MISSING:
            spec = dataclasses.field()
        elif isinstance(default, _FIELD) and default.default_factory is not msgspec.NODEFAULT:
            spec = dataclasses.field(default_factory=default.default_factory)
        else:
            spec = dataclasses.field(default=default.default if isinstance(default, _FIELD) else default)
        # What dataclasses' class processing sets on each field: its name, its type, that it is a
        # plain field (the marker ``dataclasses.fields`` filters on), and not keyword-only.
        spec.name = name
        spec.type = annotations[name]
        spec._field_type = _PLAIN_FIELD
        spec.kw_only = False
        fields[name] = spec
    return fields


class StructMeta(msgspec.StructMeta):
    """Takes a struct class's defaults into its constructor; a class with ``TYPE`` gets it as its msgspec tag.

    Each class gets a metaclass of its own (a subclass of this one) whose ``__call__`` is the
    class's generated constructor.
    """

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **options: Any) -> StructMeta:
        """Create the class, with its own metaclass, constructor and dataclass fields."""
        defaults: dict[str, Any] = {}
        for base in reversed(bases):
            defaults.update(getattr(base, "_scaler_defaults", {}))
        for field_name, annotation in namespace.get("__annotations__", {}).items():
            if field_name in namespace and not _is_class_variable(annotation):
                defaults[field_name] = namespace.pop(field_name)
        if "TYPE" in namespace:
            options.setdefault("tag", namespace["TYPE"])  # the wire code is the first item of the array
        own_metaclass = type(f"{name}Meta", (mcls,), {"__module__": namespace.get("__module__", __name__)})
        cls: Any = super().__new__(own_metaclass, name, bases, namespace, **options)
        cls._scaler_defaults = defaults
        cls.__dataclass_fields__ = _dataclass_fields(cls, defaults)
        if not TYPE_CHECKING:  # to type checkers, constructors are what the class body declares
            own_metaclass.__call__ = _constructor(cls, defaults)
        created: StructMeta = cls
        return created

"""`Record`: the base of the agent's immutable records, a typing.NamedTuple that is cheap to define.

typing.NamedTuple checks every field's annotation when a class is made, and with postponed
annotations (every module here) each check compiles the annotation's text: the 35 record
classes a `check` defines cost 19 ms that way, a third of the whole command. Type checkers
see typing.NamedTuple itself; at run time a `Record` subclass is the same
collections.namedtuple (fields, defaults, docstring, methods and properties of the class body),
made without that check. Field order rules are the same: fields with defaults come last.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    # Names a namedtuple defines itself; a class body must not replace them.
    _OWN = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                      "_make", "_replace", "_asdict"})
    _SKIP = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__", "__orig_bases__"})

    class _RecordMeta(type):
        def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if not bases:  # `Record` itself
                return super().__new__(mcs, name, bases, namespace)
            fields = dict(namespace.get("__annotations__", {}))
            with_default = [f for f in fields if f in namespace]
            if with_default != list(fields)[len(fields) - len(with_default):]:
                raise TypeError(f"{name}: fields without a default must come before fields with one")
            made = collections.namedtuple(name, fields, defaults=[namespace[f] for f in with_default],
                                          module=namespace["__module__"])
            made.__qualname__ = namespace.get("__qualname__", name)
            made.__annotations__ = fields
            if namespace.get("__doc__"):
                made.__doc__ = namespace["__doc__"]
            for key, value in namespace.items():
                if key in _SKIP or key in fields:
                    continue
                if key in _OWN:
                    raise AttributeError(f"{name}: cannot overwrite the record's own attribute {key}")
                setattr(made, key, value)
                if hasattr(value, "__set_name__"):
                    value.__set_name__(made, key)
            return made

    class Record(metaclass=_RecordMeta):
        """Subclass it like typing.NamedTuple: annotated fields, then methods."""

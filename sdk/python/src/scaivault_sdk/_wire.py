"""Decoding JSON responses into the SDK's dataclasses.

Models are plain dataclasses whose field names are the wire names (or carry
``metadata={"wire": ...}``). One small decoder reads them all, so the set of response
fields the SDK depends on is exactly the set of dataclass fields: the OpenAPI contract
test walks the same definitions (``wire_fields``).

Unknown response fields are ignored (servers add fields); a missing field with no
default is a broken response and raises, rather than surfacing later as ``None``.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

from .errors import ScaiVaultError

T = TypeVar("T")


def wire_name(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("wire", field.name))


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    # Resolved once per model: get_type_hints evaluates the string annotations.
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def decode(tp: Any, value: Any) -> Any:
    """Convert a JSON value to ``tp`` (a dataclass, datetime, list/dict/Optional of them)."""
    if value is None or tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(tp) if arg is not type(None)]
        return decode(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = get_args(tp)
        return [decode(item, v) for v in value]
    if origin is dict:
        _, item = get_args(tp)
        return {k: decode(item, v) for k, v in value.items()}
    if tp is datetime:
        return datetime.fromisoformat(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decode_object(tp, value)
    return value


def decode_object(cls: type[T], obj: Any) -> T:
    if not isinstance(obj, Mapping):
        raise ScaiVaultError(
            f"expected a JSON object for {cls.__name__}, got {type(obj).__name__}",
            code="invalid_response",
        )
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = wire_name(field)
        if name in obj:
            kwargs[field.name] = decode(hints[field.name], obj[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ScaiVaultError(
                f"response for {cls.__name__} lacks field {name!r}", code="invalid_response"
            )
    return cls(**kwargs)


def _model_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def wire_fields(cls: type) -> dict[str, type | None]:
    """Wire field name -> nested model (or ``None``) for every field ``cls`` reads."""
    hints = _hints(cls)
    return {
        wire_name(f): _model_of(hints[f.name])
        for f in dataclasses.fields(cls)
    }


class ModelDecoder(Generic[T]):
    """Decodes a response body into ``cls``; ``cls`` is kept for the contract test."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls

    def __call__(self, body: Any) -> T:
        return decode_object(self.cls, body)


def model(cls: type[T]) -> ModelDecoder[T]:
    return ModelDecoder(cls)


"""Shapes shared by every resource: the strict request base, bounded ids and JSON, and the page of a list."""

from __future__ import annotations

import json
import math
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

T = TypeVar("T")

MAX_ID = 2**63 - 1
"""The largest row id (a signed 64-bit integer in SQL); larger ids would overflow the database driver."""

MAX_JSON_DEPTH = 16
"""How deeply a free-form JSON value the service stores may nest (objects and arrays)."""
MAX_JSON_BYTES = 16_384
"""The largest free-form JSON value the service stores, in bytes of compact JSON."""
MAX_JSON_INT = 2**53
"""The largest magnitude of an integer in free-form JSON (exact in every JSON reader, e.g. JavaScript's)."""


class Strict(BaseModel):
    """Base of request bodies: unknown fields are an error (a typo must not be silently ignored).

    Values are not coerced: ``"4"`` or ``true`` is not an integer and ``0`` is not ``false``, as the
    OpenAPI document says. Numbers must be finite: Python's ``json`` reads ``Infinity``, ``NaN`` and
    ``1e309`` as floats, which pydantic would otherwise accept and store as null.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _refused(loc: tuple[str | int, ...], value: object, reason: str) -> ValidationError:
    """A validation error at `loc` inside the field (pydantic prefixes the field's own location)."""
    detail = InitErrorDetails(type=PydanticCustomError("bounded_json", reason), loc=loc, input=value)
    return ValidationError.from_exception_data("BoundedJSON", [detail])


def _bounded_json(value: T) -> T:
    """`value` when it nests at most `MAX_JSON_DEPTH` deep, its numbers are finite and bounded, and it is small.

    Raises:
        ValidationError: naming the offending number's path inside the field, or the field itself
            when the value is too deep or too large (both limits are in the message).
    """
    stack: list[tuple[tuple[str | int, ...], object]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, dict | list):
            if len(loc) >= MAX_JSON_DEPTH:
                raise _refused((), "...", f"nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(((*loc, key), child) for key, child in pairs)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _refused(loc, item, f"{item} is not a finite number")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT:
            raise _refused(loc, item, f"an integer beyond +-2**53 ({MAX_JSON_INT}): not exact in every JSON reader")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_JSON_BYTES:
        raise _refused((), "...", f"{size} bytes of JSON; at most {MAX_JSON_BYTES} are stored")
    return value


BoundedJSON = Annotated[T, AfterValidator(_bounded_json)]
"""A free-form JSON value the service stores: at most `MAX_JSON_DEPTH` deep and `MAX_JSON_BYTES` long,
with finite numbers and integers within +-`MAX_JSON_INT`; e.g. ``BoundedJSON[dict[str, Any]]``."""


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first."""

    items: list[T]
    next_page_token: str | None = Field(None, description="pass as `page_token` for the next page; null: last page")

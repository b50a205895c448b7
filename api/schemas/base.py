"""Shapes shared by every resource: the strict request base and the page of a list."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    """Base of request bodies: unknown fields are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list, newest first."""

    items: list[T]
    next_page_token: str | None = Field(None, description="pass as `page_token` for the next page; null: last page")

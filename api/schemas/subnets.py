"""Subnets: a searched, exported or fine-tuned member of a supernet."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class SubnetOut(BaseModel):
    """A subnet and where to download it."""

    id: int = Field(examples=[42])
    supernet_id: int
    search_id: int | None
    arch_key: str
    arch: dict[str, Any]
    predicted: dict[str, float] | None = None
    validated: dict[str, float] | None = None
    pareto_rank: int | None = None
    parent_id: int | None = Field(None, description="the subnet this one was fine-tuned from", examples=[7])
    download_url: str | None = Field(None, examples=["/v1/subnets/42/download?format=onnx"])
    created_at: dt.datetime

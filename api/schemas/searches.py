"""Searches: the request (a `predictors.search_spec.SearchGoal` on one of the user's supernets) and results."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import MAX_ID
from predictors.search_spec import SearchGoal
from store.models import JobStatus

EMPTY_REASON_DOC = "why the ended search's front is empty (null while it runs, and when the front has members)"
EMPTY_REASON_EXAMPLE = "no subnet met latency:cpu-ort <= 0.1: the smallest value seen was 0.3127 after 1000 evaluations"

SEARCH_EXAMPLE: dict[str, Any] = {
    "supernet_id": 3,
    "objectives": ["accuracy", "latency:cpu-ort"],
    "directions": {"accuracy": "max", "latency:cpu-ort": "min"},
    "constraints": {"latency:cpu-ort": 8.0},
    "targets": ["cpu-ort"],
    "algorithm": "evolution",
    "budget": 5000,
    "seed": 0,
}


class SearchCreate(SearchGoal):
    """Search a trained supernet for subnets that optimise the objectives under the constraints on the targets.

    The goal's fields are validated by `SearchGoal` (objective names, the ``latency`` alias,
    directions, constraints, algorithm, budgets); the supernet and the targets are checked against
    the user's rows by the service.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [SEARCH_EXAMPLE]}, allow_inf_nan=False)

    supernet_id: int = Field(ge=1, le=MAX_ID, description="a trained supernet of yours")


class SearchOut(BaseModel):
    """A search and its job's status."""

    id: int = Field(examples=[5])
    supernet_id: int
    objectives: list[str]
    directions: dict[str, str]
    constraints: dict[str, Any]
    targets: list[str]
    algorithm: str
    budget: int
    hypervolume: float | None = None
    job_id: int | None
    status: JobStatus | None = Field(None, description="the search job's status")
    empty_reason: str | None = Field(None, description=EMPTY_REASON_DOC, examples=[EMPTY_REASON_EXAMPLE])
    pareto_url: str = Field(examples=["/v1/searches/5/pareto"])
    created_at: dt.datetime


class ParetoPoint(BaseModel):
    """One member of a search's Pareto front."""

    subnet_id: int = Field(examples=[42])
    arch_key: str
    arch: dict[str, Any]
    predicted: dict[str, float] | None = Field(None, examples=[{"accuracy": 0.91, "latency:cpu-ort": 3.2}])
    validated: dict[str, float] | None = Field(None, examples=[{"accuracy": 0.905, "latency:cpu-ort": 3.4}])
    pareto_rank: int | None = None


class MeasurementDrift(BaseModel):
    """How far a reference subnet's measured latency moved while the front was measured on a target."""

    reference: str = Field(description="arch_key of the reference subnet (the first front member)")
    reference_before_ms: float = Field(description="its median latency before the front's measurements")
    reference_after_ms: float = Field(description="and after them")
    relative_change: float = Field(description="(after - before) / before")
    threshold: float = Field(description="the largest |relative_change| accepted (the measure settings' cv_threshold)")
    flagged: bool = Field(description="the kept measurements drifted beyond the threshold: treat them with care")
    remeasured: bool = Field(description="a first pass drifted beyond the threshold, so the front was measured again")
    first_relative_change: float = Field(description="the first pass's relative change")


class ParetoOut(BaseModel):
    """A search's Pareto front, as stored when the search finished (empty before)."""

    search_id: int
    status: JobStatus | None
    objectives: list[str]
    directions: dict[str, str]
    points: list[ParetoPoint]
    empty_reason: str | None = Field(None, description=EMPTY_REASON_DOC, examples=[EMPTY_REASON_EXAMPLE])
    measurement_drift: dict[str, MeasurementDrift] | None = Field(
        None, description="per target whose latencies were measured end to end: the drift seen while measuring"
    )

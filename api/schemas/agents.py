"""Remote device agents (``hwnas agent``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.base import BoundedJSON, Strict


class AgentRegister(Strict):
    """An agent announces itself, the targets it measures, and the machine it runs on."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "rpi4-lab", "targets": ["rpi4-ort"], "environment": {"cpu_model": "Cortex-A72", "threads": 4}}
            ]
        }
    )

    name: str = Field(min_length=1, max_length=120, examples=["rpi4-lab"])
    targets: list[str] = Field(min_length=1, max_length=16)
    environment: BoundedJSON[dict[str, Any]] = Field(
        default_factory=dict, description="predictors.latency.measure.environment()"
    )


class AgentOut(BaseModel):
    """A registered agent."""

    id: int
    name: str
    targets: list[str]
    environment: dict[str, Any] = Field(
        description="the device's facts at its last registration: CPU model, cores, machine, ONNX Runtime version and "
        "providers, CPU frequency governor, ..."
    )
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


class ClaimRequest(Strict):
    """Ask for the next measurement task of a target."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"target": "rpi4-ort", "lease_s": 300}]})

    target: str = Field(min_length=1, max_length=120)
    lease_s: float | None = Field(None, ge=1, le=86_400, description="how long the task is ours (default: server's)")


class TaskResult(Strict):
    """The outcome of a held task: a measurement, or an error."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "measurement": {
                        "median_ms": 3.1, "p90_ms": 3.3, "p95_ms": 3.4, "mean_ms": 3.15, "cv": 0.04, "runs": 50,
                        "attempts": 1, "noisy": False, "target": "rpi4-ort", "input_shape": [1, 3, 224, 224],
                        "environment": {"cpu_model": "Cortex-A72"},
                    }
                }
            ]
        }
    )  # fmt: skip

    measurement: BoundedJSON[dict[str, Any]] | None = Field(
        None, description="predictors.latency.Measurement.to_dict()"
    )
    error: str | None = Field(None, max_length=10_000, description="why the task could not be measured")

    @model_validator(mode="after")
    def _one(self) -> TaskResult:
        if (self.measurement is None) == (self.error is None):
            raise ValueError("give exactly one of measurement and error")
        return self

"""Targets, their latency models, and measurement tasks for remote agents."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import BoundedJSON, Strict


class TargetCreate(Strict):
    """Register a device + runtime of yours (see `predictors.latency.Target`)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "rpi4-ort", "device": "arm", "threads": 4, "remote": True}]}
    )

    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", examples=["rpi4-ort"])
    device: str = Field("cpu", max_length=120, examples=["arm"])
    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=1024)
    inter_op_threads: int = Field(1, ge=1, le=1024)
    batch_size: int = Field(1, ge=1, le=4096)
    precision: Literal["fp32", "fp16"] = "fp32"
    provider_options: BoundedJSON[dict[str, str]] = Field(
        default_factory=dict, description="onnxruntime execution-provider options"
    )
    remote: bool = Field(True, description="measured by `hwnas agent` on the device")
    description: str = Field("", max_length=2000)


class TargetOut(BaseModel):
    """A target you can use: yours, or a shared built-in one."""

    name: str = Field(examples=["rpi4-ort"])
    device: str
    runtime: str
    settings: dict[str, Any] = Field(description="threads, batch size, precision, ... and the agent's environment")
    description: str
    shared: bool = Field(description="a built-in target, shared by every user")
    created_at: dt.datetime | None = None


class TableImport(Strict):
    """OFA-format lookup tables (``{R}_lookup_table.yaml``), one YAML text per resolution."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"space": "ofa_mbv3_d234_e346_k357_w1.2", "tables": {"224": "<224_lookup_table.yaml text>"}}]
        }
    )

    space: str = Field("ofa_mbv3_d234_e346_k357_w1.2", description="the space the tables price")
    tables: dict[str, str] = Field(min_length=1, description="resolution (px) -> YAML text")


class LatencyModelOut(BaseModel):
    """A latency model of a target and how good it is."""

    id: int
    target: str
    space: str
    kind: str = Field(examples=["imported"], description="lut, learned or imported")
    quality: dict[str, Any] | None = Field(None, examples=[{"mape": 0.031, "within_10pct": 0.97, "kendall_tau": 0.93}])
    created_at: dt.datetime
    used_by_searches: bool = Field(
        False, description="the model a search on this space uses: learned, else a measured table, else imported"
    )


class TaskCreate(Strict):
    """Measure an ONNX model on a target (a remote agent of the target picks it up)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model_base64": "CAcSB3B5dG9yY2g...", "settings": {"runs": 50}}]}
    )

    model_base64: str = Field(min_length=1, description="the ONNX file, base64")
    settings: BoundedJSON[dict[str, Any]] = Field(
        default_factory=dict, description="predictors.latency.MeasureSettings fields"
    )
    space: str | None = Field(None, description="with arch: the subnet this model is, to record its latency")
    arch: BoundedJSON[dict[str, Any]] | None = None


class TaskOut(BaseModel):
    """A measurement task."""

    id: int = Field(examples=[12])
    target: str
    status: str = Field(examples=["CLAIMED"], description="QUEUED, CLAIMED, DONE or FAILED")
    settings: dict[str, Any]
    target_spec: dict[str, Any] = Field(description="predictors.latency.Target fields to measure with")
    model_url: str = Field(examples=["/v1/agents/1/tasks/12/model"])
    model_sha256: str | None = None
    lease_expires_at: dt.datetime | None = None
    result: dict[str, Any] | None = None

"""``noop``: a trivial job for tests and benchmarks (optionally sleeps, reports steps, fails, or asks for resources)."""

from __future__ import annotations

import os
import socket
import sys
import time

from pydantic import BaseModel, ConfigDict, Field

from workers.kinds.base import NoInputs, TypedJobKind, WorkContext, register_job_kind


class NoopParams(BaseModel):
    """Parameters of a ``noop`` job."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(0.0, ge=0, le=3600, description="total time to sleep, spread over the steps")
    steps: int = Field(1, ge=1, le=100_000, description="progress reports")
    fail: str | None = Field(None, description="raise ValueError with this message at the end")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources to request")


class NoopOutcome(BaseModel):
    """Where a ``noop`` job ran."""

    pid: int
    host: str
    node_id: str | None
    attempt: int


@register_job_kind("noop")
class NoopJob(TypedJobKind[NoopParams, NoInputs, NoopOutcome]):
    """Sleeps `seconds` in `steps` steps, reporting each; returns where it ran (pid, host, Ray node)."""

    Params = NoopParams
    Result = NoopOutcome
    num_cpus = 0.0

    def ray_resources(self, params: NoopParams) -> dict[str, float]:
        """The requested resources."""
        return dict(params.resources)

    def work(self, params: NoopParams, inputs: NoInputs, ctx: WorkContext) -> NoopOutcome:
        """Sleep and report."""
        for step in range(params.steps):
            time.sleep(params.seconds / params.steps)
            ctx.progress(step=step + 1, steps=params.steps)
        if params.fail is not None:
            raise ValueError(params.fail)
        node_id = None
        if "ray" in sys.modules:
            import ray

            node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return NoopOutcome(pid=os.getpid(), host=socket.gethostname(), node_id=node_id, attempt=ctx.attempt)

"""Jobs as the API shows them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from store.models import Job, JobStatus


class JobErrorOut(BaseModel):
    """Why a job failed."""

    code: str | None
    message: str | None


class JobOut(BaseModel):
    """A job: what it does, where it is, and what it produced."""

    id: int = Field(examples=[17])
    kind: str = Field(examples=["train_supernet"])
    status: JobStatus = Field(examples=["RUNNING"])
    attempts: int = Field(examples=[1])
    max_attempts: int = Field(examples=[3])
    params: dict[str, Any]
    progress: dict[str, Any] | None = Field(None, examples=[{"epoch": 3, "epochs": 10, "loss": 1.21}])
    result: dict[str, Any] | None = None
    error: JobErrorOut | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    events_url: str = Field(examples=["/v1/jobs/17/events"])

    @classmethod
    def of(cls, job: Job) -> JobOut:
        """The API form of a job row."""
        error = JobErrorOut(code=job.error_code, message=job.error_message) if job.error_code else None
        return cls(
            id=job.id, kind=job.kind, status=job.status, attempts=job.attempts, max_attempts=job.max_attempts,
            params=job.params, progress=job.progress, result=job.result, error=error, created_at=job.created_at,
            started_at=job.started_at, finished_at=job.finished_at, events_url=f"/v1/jobs/{job.id}/events",
        )  # fmt: skip

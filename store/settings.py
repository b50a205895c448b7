"""Service settings: one pydantic-settings model read from ``HWNAS_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "HWNAS_"


class Settings(BaseSettings):
    """Where the service keeps its state, and the job runner's timing.

    Every field can be set with the environment variable ``HWNAS_<FIELD>``, e.g.
    ``HWNAS_DATABASE_URL=postgresql+psycopg://user@host/db`` or ``HWNAS_LEASE_S=30``; values given to
    the constructor win over the environment, which wins over the defaults.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    home: Path = Field(Path("~/.hwnas"), description="root of the local state (database, artefacts, run dirs)")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite at <home>/hwnas.db")
    artifacts_dir: Path | None = Field(None, description="local artefact store; default: <home>/artifacts")
    runs_dir: Path | None = Field(None, description="per-job run directories (checkpoints); default: <home>/runs")
    lease_s: float = Field(60.0, gt=0, description="a job's lease; an unrenewed lease makes the job claimable again")
    poll_s: float = Field(2.0, gt=0, description="how often an idle worker looks for queued jobs")
    max_attempts: int = Field(3, ge=1, description="default number of claims a job gets before it fails")
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0, description="how long SQLite waits for a lock")
    data_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        (),
        description="server directories whose datasets users may name by path (config.data_dir); "
        f"HWNAS_DATA_ROOTS lists them separated by {os.pathsep!r}. Empty: users upload datasets instead",
    )
    max_dataset_bytes: int = Field(
        1 << 30, ge=1, description="largest dataset upload, and the most its archive may expand to"
    )
    gil_switch_interval_ms: float = Field(
        0.5,
        gt=0,
        description="the API process's GIL switch interval (Python's default: 5 ms). With the default, a "
        "database call in the thread pool waits up to 5 ms for the busy event loop at every step and "
        "stalls all requests for hundreds of ms under load",
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(os.pathsep) if part)
        return value

    @classmethod
    def local(cls, home: Path) -> Settings:
        """A store entirely under `home` (SQLite, artefacts, run dirs), whatever ``HWNAS_*`` says about them.

        For the quickstart and tests: a user's ``HWNAS_DATABASE_URL`` must not send their rows elsewhere.
        """
        return cls(home=home, database_url=None, artifacts_dir=None, runs_dir=None)

    @property
    def home_dir(self) -> Path:
        """`home` with ``~`` expanded."""
        return self.home.expanduser()

    @property
    def db_url(self) -> str:
        """The database URL in effect."""
        return self.database_url or f"sqlite:///{self.home_dir / 'hwnas.db'}"

    @property
    def artifacts_path(self) -> Path:
        """The artefact store's directory in effect."""
        return (self.artifacts_dir or self.home_dir / "artifacts").expanduser()

    @property
    def resolved_data_roots(self) -> tuple[Path, ...]:
        """`data_roots` with ``~`` expanded and links followed (what a path must resolve inside)."""
        return tuple(Path(os.path.realpath(root.expanduser())) for root in self.data_roots)

    @property
    def runs_path(self) -> Path:
        """The run directories' parent in effect."""
        return (self.runs_dir or self.home_dir / "runs").expanduser()

"""The store's tables (SQLAlchemy 2.0 typed ORM); importing this package registers them all on `Base.metadata`."""

from api.db.models.artifacts import Artifact
from api.db.models.jobs import Job, JobEvent, JobStatus, JobStatusChange
from api.db.models.nas import Search, Subnet, Supernet
from api.db.models.targets import Agent, AgentTask, LatencyMeasurement, LatencyTable, Target
from api.db.models.users import ApiToken, User

__all__ = [
    "Agent",
    "AgentTask",
    "ApiToken",
    "Artifact",
    "Job",
    "JobEvent",
    "JobStatus",
    "JobStatusChange",
    "LatencyMeasurement",
    "LatencyTable",
    "Search",
    "Subnet",
    "Supernet",
    "Target",
    "User",
]

"""The store's tables (SQLAlchemy 2.0 typed ORM); importing this package registers them all on `Base.metadata`."""

from store.models.artifacts import Artifact
from store.models.cluster import ClusterReport
from store.models.datasets import Dataset
from store.models.jobs import Job, JobEvent, JobStatus, JobStatusChange
from store.models.nas import Search, Subnet, Supernet
from store.models.targets import Agent, AgentTask, LatencyMeasurement, LatencyTable, Target
from store.models.users import ApiToken, User

__all__ = [
    "Agent",
    "AgentTask",
    "ApiToken",
    "Artifact",
    "ClusterReport",
    "Dataset",
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

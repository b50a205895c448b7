"""The artefact store: an interface, a local-directory implementation, and the SQL records of artefacts."""

from api.storage.base import ArtifactIntegrityError, ArtifactNotFoundError, ArtifactStore, StoredFile, check_key
from api.storage.local import LocalArtifactStore
from api.storage.records import open_artifact, read_artifact, register_artifact

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "LocalArtifactStore",
    "StoredFile",
    "check_key",
    "open_artifact",
    "read_artifact",
    "register_artifact",
]

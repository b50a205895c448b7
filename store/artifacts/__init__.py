"""The artefact store: an interface, a local-directory implementation, and the SQL records of artefacts."""

from store.artifacts.base import ArtifactIntegrityError, ArtifactNotFoundError, ArtifactStore, StoredFile, check_key
from store.artifacts.local import LocalArtifactStore
from store.artifacts.records import open_artifact, read_artifact, register_artifact

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

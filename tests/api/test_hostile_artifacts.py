"""Issue 25, case 7: a damaged stored artefact is refused before its first byte, with ``artifact_corrupt``."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.context import ServiceContext
from store.artifacts import ArtifactIntegrityError, LocalArtifactStore, register_artifact
from store.models import Subnet
from tests.api.test_api_core import add_supernet
from tests.api_helpers import Users
from tests.cli.test_client import bundle


def add_exported_subnet(ctx: ServiceContext, user_id: int) -> int:
    """A subnet of `user_id` whose bundle is stored under ``bundles/s.zip``."""
    supernet_id = add_supernet(ctx, user_id)
    with ctx.db.session() as s:
        artifact = register_artifact(s, ctx.store.put("bundles/s.zip", bundle()), kind="bundle")
        row = Subnet(user_id=user_id, supernet_id=supernet_id, arch_key="k", arch={}, predicted={},
                     bundle_artifact_id=artifact.id)  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


def flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["bundle", "onnx", "safetensors"])
def test_a_flipped_byte_answers_artifact_corrupt_before_any_byte_is_sent(
    client: TestClient, ctx: ServiceContext, users: Users, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    subnet_id = add_exported_subnet(ctx, users.a_id)
    url = f"/v1/subnets/{subnet_id}/download?format={fmt}"
    intact = client.get(url, headers=users.a)
    assert intact.status_code == 200 and intact.headers["X-Content-SHA256"]
    assert "corrupt_artifacts" not in client.get("/readyz").json()

    path = ctx.settings.artifacts_path / "bundles" / "s.zip"
    flip_one_byte(path, len(path.read_bytes()) // 2)
    with caplog.at_level(logging.ERROR, logger="api.services.health"):
        for _ in range(2):
            damaged = client.get(url, headers=users.a)
            assert damaged.status_code == 500
            assert damaged.headers["content-type"] == "application/json"
            body = damaged.json()
            assert body["code"] == "artifact_corrupt" and body["field"] is None
            assert "damaged" in body["message"] and "bundles/s.zip" not in body["message"]
            assert "X-Content-SHA256" not in damaged.headers
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"artefact 'bundles/s.zip' is corrupt: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()} "
        f"!= recorded {hashlib.sha256(bundle()).hexdigest()}"
    ] * 2
    assert f"GET /v1/subnets/{subnet_id}/download" in caplog.records[0].getMessage()
    assert client.get("/readyz").json() == {"status": "ready", "database": "sqlite", "corrupt_artifacts": 1}


def test_the_checked_handle_is_the_one_streamed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    stored = store.put("b.zip", b"checked content")
    with store.open_verified("b.zip", stored.sha256) as fp:
        store.put("b.zip", b"replaced meanwhile")  # an atomic put renames a new file into place
        assert fp.read() == b"checked content"
    flip_one_byte(store.path("b.zip"), 0)
    with pytest.raises(ArtifactIntegrityError) as error:
        store.open_verified("b.zip", hashlib.sha256(b"replaced meanwhile").hexdigest())
    assert error.value.key == "b.zip" and error.value.actual == hashlib.sha256(b"seplaced meanwhile").hexdigest()

"""The artefact store: atomic puts, keys, sha256 verification on read, and the SQL records."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
from sqlalchemy import select

from store.artifacts import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    LocalArtifactStore,
    open_artifact,
    read_artifact,
    register_artifact,
)
from store.db import Database
from store.models import Artifact


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def test_put_get_exists_delete(store: LocalArtifactStore, tmp_path: Path) -> None:
    data = b"weights" * 1000
    stored = store.put("jobs/1/model.bin", data)
    assert (stored.key, stored.size, stored.sha256) == ("jobs/1/model.bin", len(data), hashlib.sha256(data).hexdigest())
    assert store.exists("jobs/1/model.bin") and store.get("jobs/1/model.bin", stored.sha256) == data
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 20_000)  # several read chunks
    from_file = store.put("jobs/1/big.bin", source)
    assert from_file.sha256 == hashlib.sha256(source.read_bytes()).hexdigest() and from_file.size == 5_120_000
    with store.open("jobs/1/big.bin", from_file.sha256) as fp:
        assert fp.read(10) == bytes(range(10))
    replaced = store.put("jobs/1/model.bin", b"new")
    assert store.get("jobs/1/model.bin", replaced.sha256) == b"new"
    store.delete("jobs/1/model.bin")
    store.delete("jobs/1/model.bin")
    assert not store.exists("jobs/1/model.bin")
    with pytest.raises(ArtifactNotFoundError, match=r"jobs/1/model\.bin"):
        store.get("jobs/1/model.bin")
    assert sorted(p.name for p in (store.root / "jobs" / "1").iterdir()) == ["big.bin"], "no temporary files left"


def test_a_failed_put_leaves_the_old_file_and_no_temporary(store: LocalArtifactStore, tmp_path: Path) -> None:
    store.put("a/b.bin", b"old")
    with pytest.raises(FileNotFoundError):
        store.put("a/b.bin", tmp_path / "missing.bin")
    assert store.get("a/b.bin") == b"old"
    assert [p.name for p in (store.root / "a").iterdir()] == ["b.bin"]


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b"])
def test_bad_keys_are_refused(store: LocalArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="artefact key"):
        store.put(key, b"x")


def test_a_corrupted_file_fails_verification(store: LocalArtifactStore, tmp_path: Path) -> None:
    stored = store.put("m.onnx", b"0123456789" * 100)
    store.path("m.onnx").write_bytes(b"0123456789" * 99 + b"012345678X")
    assert store.get("m.onnx") != b"0123456789" * 100, "unverified reads see the bytes as they are"
    with pytest.raises(ArtifactIntegrityError, match=r"m\.onnx"):
        store.get("m.onnx", stored.sha256)
    with pytest.raises(ArtifactIntegrityError), store.open("m.onnx", stored.sha256) as fp:
        while fp.read(64):
            pass
    with pytest.raises(ArtifactIntegrityError):
        store.fetch_tree({"m.onnx": ("m.onnx", stored.sha256)}, tmp_path / "out")


def test_put_tree_and_fetch_tree(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    (src / "sub").mkdir(parents=True)
    (src / "w.safetensors").write_bytes(b"w")
    (src / "sub" / "state.json").write_text("{}")
    stored = store.put_tree("jobs/7/checkpoint", src)
    assert [s.key for s in stored] == ["jobs/7/checkpoint/sub/state.json", "jobs/7/checkpoint/w.safetensors"]
    out = store.fetch_tree(
        {s.key.removeprefix("jobs/7/checkpoint/"): (s.key, s.sha256) for s in stored}, tmp_path / "o"
    )
    assert (out / "sub" / "state.json").read_text() == "{}" and (out / "w.safetensors").read_bytes() == b"w"


def test_the_store_is_picklable_for_ray_tasks(store: LocalArtifactStore) -> None:
    copy = pickle.loads(pickle.dumps(store))
    stored = copy.put("x", b"y")
    assert store.get("x", stored.sha256) == b"y"


def test_artifacts_recorded_in_sql_are_verified_on_read(store: LocalArtifactStore, store_db: Database) -> None:
    stored = store.put("jobs/3/bundle.zip", b"PK...")
    with store_db.session() as s:
        row = register_artifact(s, stored, kind="bundle")
        assert row.id is not None
    with store_db.reader() as s:
        artifact = s.scalars(select(Artifact)).one()
    assert (artifact.key, artifact.size, artifact.sha256, artifact.kind) == (stored.key, 5, stored.sha256, "bundle")
    assert read_artifact(store, artifact) == b"PK..."
    with open_artifact(store, artifact) as fp:
        assert fp.read() == b"PK..."
    store.path(artifact.key).write_bytes(b"PK,,,")
    with pytest.raises(ArtifactIntegrityError, match=stored.sha256):
        read_artifact(store, artifact)

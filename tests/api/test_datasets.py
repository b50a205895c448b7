"""Datasets as resources (issue 25, case 2): uploads validated before they are stored, owned, referred to by id;
server paths only inside the operator's data roots, and no answer that tells what exists elsewhere on the server.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.context import ServiceContext
from store.models import Artifact, Dataset, Job
from tests.api_helpers import Users
from tests.dataset_files import digits_idx_zip, digits_imagefolder_zip, digits_npz, png, zip_bytes

SPACE = "ofa_mbv3_d234_e346_k357_32px"


def upload(client: TestClient, users: Users, body: bytes, who: str = "a", **params: str) -> Any:
    return client.post("/v1/datasets", content=body, params=params, headers=getattr(users, who))


def stored_counts(ctx: ServiceContext) -> tuple[int, int, int]:
    """Dataset rows, dataset artefacts, and files under the artefact store's datasets/ folder."""
    with ctx.db.reader() as s:
        rows = s.scalar(select(func.count()).select_from(Dataset))
        artifacts = s.scalar(select(func.count()).select_from(Artifact).where(Artifact.kind == "dataset"))
    files = sum(1 for p in (ctx.settings.artifacts_path / "datasets").rglob("*") if p.is_file()) if (
        ctx.settings.artifacts_path / "datasets").exists() else 0  # fmt: skip
    return int(rows or 0), int(artifacts or 0), files


@pytest.mark.parametrize(
    ("make", "fmt"), [(digits_npz, "npz"), (digits_imagefolder_zip, "imagefolder"), (digits_idx_zip, "idx")]
)
def test_each_format_is_validated_stored_and_listed(
    client: TestClient, users: Users, ctx: ServiceContext, tmp_path: Path, make: Any, fmt: str
) -> None:
    body = make(tmp_path / "upload").read_bytes()
    response = upload(client, users, body, name="digits")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert response.headers["Location"] == f"/v1/datasets/{dataset['id']}"
    assert (dataset["format"], dataset["train_images"], dataset["test_images"]) == (fmt, 400, 100)
    assert (dataset["image_size"], dataset["channels"], dataset["num_classes"]) == (8, 1, 10)
    assert dataset["classes"] == [str(i) for i in range(10)] and dataset["upload_size"] == len(body)
    with ctx.db.reader() as s:
        artifact = s.scalars(select(Artifact).where(Artifact.kind == "dataset")).one()
    assert artifact.sha256 == dataset["sha256"] and artifact.user_id == users.a_id
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=users.a).json() == dataset
    assert client.get("/v1/datasets", headers=users.a).json()["items"] == [dataset]


def test_the_same_file_again_is_the_same_dataset(client: TestClient, users: Users, ctx: ServiceContext,
                                                 tmp_path: Path) -> None:  # fmt: skip
    body = digits_npz(tmp_path / "d.npz").read_bytes()
    first = upload(client, users, body)
    again = upload(client, users, body, name="other label")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert stored_counts(ctx) == (1, 1, 1)
    other = upload(client, users, body, who="b")  # another user's copy is their own
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_another_users_dataset_is_not_found_anywhere(client: TestClient, users: Users, tmp_path: Path) -> None:
    dataset = upload(client, users, digits_npz(tmp_path / "d.npz").read_bytes()).json()
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=users.b).status_code == 404
    assert client.get("/v1/datasets", headers=users.b).json()["items"] == []
    train = client.post("/v1/supernets", json={"dataset_id": dataset["id"], "config": {"space": SPACE}},
                        headers=users.b)  # fmt: skip
    assert train.status_code == 404 and train.json()["field"] == "dataset_id"
    assert train.json() == {**train.json(), "code": "not_found"}
    missing = client.post("/v1/supernets", json={"dataset_id": 999, "config": {"space": SPACE}}, headers=users.b)
    assert missing.json()["message"].replace("999", str(dataset["id"])) == train.json()["message"]


IMAGE = png(np.full((8, 8), 200, dtype=np.uint8))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the body is empty"),
        (b"not a zip at all", "not a zip or .npz file"),
        (
            zip_bytes([("../evil.png", IMAGE), ("train/0/a.png", IMAGE), ("test/0/a.png", IMAGE)]),
            "unsafe member name",
        ),
        (zip_bytes([("/etc/evil.png", IMAGE)]), "unsafe member name"),
        (zip_bytes([("notes.txt", b"hello")]), "unrecognised dataset file"),
        (
            zip_bytes([("train/0/a.png", b"not a png"), ("test/0/b.png", IMAGE)]),
            "train/0/a.png is not a readable image",
        ),
        (zip_bytes([("train/0/a.png", IMAGE), ("test/1/b.png", IMAGE)]), "must hold the same class directories"),
    ],
)
def test_a_bad_upload_is_422_naming_the_body_and_stores_nothing(
    client: TestClient, users: Users, ctx: ServiceContext, body: bytes, says: str
) -> None:
    response = upload(client, users, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == "body" and says in error["message"], error
    for server_path in (str(ctx.settings.home_dir), "/tmp", "hwnas-dataset-"):
        assert server_path not in error["message"]
    assert stored_counts(ctx) == (0, 0, 0)
    assert not any((ctx.settings.home_dir / "uploads").iterdir()), "the scratch copy must be gone"


def test_class_names_are_bounded(client: TestClient, users: Users, ctx: ServiceContext, tmp_path: Path) -> None:
    x = np.zeros((12, 8, 8), dtype=np.uint8)
    x[::2] = 255
    path = tmp_path / "long.npz"
    with path.open("wb") as out:
        np.savez(out, x=x, y=np.arange(12) % 2, classes=np.array(["a" * 201, "b"]))
    response = upload(client, users, path.read_bytes())
    assert response.status_code == 422 and "over 200 characters" in response.json()["message"]
    assert stored_counts(ctx) == (0, 0, 0)


def test_a_format_that_is_not_the_files_is_422(client: TestClient, users: Users, tmp_path: Path) -> None:
    body = digits_imagefolder_zip(tmp_path / "d.zip").read_bytes()
    response = upload(client, users, body, format="npz")
    assert response.status_code == 422 and "it is a zip of train/<class>/" in response.json()["message"]
    assert upload(client, users, body, format="bogus").status_code == 422


def test_an_upload_over_the_limit_is_413_and_one_that_expands_past_it_422(
    ctx: ServiceContext, users: Users, tmp_path: Path
) -> None:
    small = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"max_dataset_bytes": 40_000}))
    with TestClient(create_app(context=small)) as client:
        assert upload(client, users, b"x" * 40_001).status_code == 413
        bomb = zip_bytes([("train/0/a.png", IMAGE), ("test/0/a.png", IMAGE), ("train/0/zeros.png", bytes(1 << 20))])
        assert len(bomb) < 40_000
        response = upload(client, users, bomb)
        assert response.status_code == 422 and "expands to over 40,000 bytes" in response.json()["message"]
        assert client.get("/v1/datasets", headers=users.a).json()["items"] == []


def jobs(ctx: ServiceContext) -> int:
    with ctx.db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


@pytest.mark.parametrize("data_dir", ["/etc", "/etc/passwd", "../../etc/passwd", "/nonexistent/data.npz"])
def test_server_paths_are_refused_without_data_roots_and_the_answer_is_the_same_whether_they_exist(
    client: TestClient, users: Users, ctx: ServiceContext, data_dir: str
) -> None:
    body = {"config": {"space": SPACE, "dataset": "npz", "data_dir": data_dir}}
    response = client.post("/v1/supernets", json=body, headers=users.a)
    assert response.status_code == 422 and response.json()["field"] == "config.data_dir"
    assert "POST /v1/datasets" in response.json()["message"] and data_dir not in response.json()["message"]
    assert jobs(ctx) == 0


def test_inside_a_data_root_a_path_is_accepted_and_outside_refused_alike(
    ctx: ServiceContext, users: Users, tmp_path: Path
) -> None:
    root = tmp_path / "shared-data"
    (root / "digits").mkdir(parents=True)
    digits_npz(root / "digits" / "d.npz")
    (root / "escape").symlink_to("/etc")
    rooted = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"data_roots": (root,)}))
    with TestClient(create_app(context=rooted)) as client:

        def train(data_dir: str) -> Any:
            body = {"config": {"space": SPACE, "dataset": "npz", "data_dir": data_dir}}
            return client.post("/v1/supernets", json=body, headers=users.a)

        accepted = train("digits/d.npz")
        assert accepted.status_code == 202, accepted.text
        with ctx.db.reader() as s:
            job = s.get(Job, accepted.json()["id"])
            assert job is not None and job.params["config"]["data_dir"] == str((root / "digits" / "d.npz").resolve())
        assert train(str(root / "digits" / "d.npz")).status_code == 202
        refusals = [train(p).json() for p in ("../../../etc/passwd", "/etc/passwd", "escape/passwd", "/nonexistent")]
        assert {r["field"] for r in refusals} == {"config.data_dir"}
        assert len({r["message"] for r in refusals}) == 1, "the answer must not depend on what exists"
        assert "passwd" not in refusals[0]["message"] and str(root) in refusals[0]["message"]


@pytest.mark.parametrize("dataset", ["npz", "imagefolder", "idx"])
def test_a_path_dataset_without_a_path_is_refused_at_submit(
    client: TestClient, users: Users, ctx: ServiceContext, dataset: str
) -> None:
    response = client.post("/v1/supernets", json={"config": {"space": SPACE, "dataset": dataset}}, headers=users.a)
    assert response.status_code == 422 and response.json()["field"] == "config.dataset"
    assert "dataset_id" in response.json()["message"] and jobs(ctx) == 0


def test_dataset_id_with_a_named_dataset_is_422(client: TestClient, users: Users, tmp_path: Path) -> None:
    dataset = upload(client, users, digits_npz(tmp_path / "d.npz").read_bytes()).json()
    body = {"dataset_id": dataset["id"], "config": {"space": SPACE, "dataset": "demo"}}
    response = client.post("/v1/supernets", json=body, headers=users.a)
    assert response.status_code == 422 and response.json()["field"] == "dataset_id"
    ok = client.post("/v1/supernets", json={"dataset_id": dataset["id"], "config": {"space": SPACE}}, headers=users.a)
    assert ok.status_code == 202

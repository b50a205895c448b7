"""Transfer from a pretrained supernet over REST (issue 22): upload an OFA-format "ImageNet" checkpoint, train a
grey 10-class supernet from it (and from that supernet, and from a server path), read the transfer report; bad
checkpoints and bad ``init_from`` references are refused with a 4xx naming the field, and nothing is stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.context import ServiceContext
from cli import main
from nas.spaces.ofa_mbv3 import DEMO_SPACE
from store.models import Artifact, Job, Supernet
from tests.api_helpers import Users, make_context, make_users
from tests.cli.test_client import Live
from tests.e2e.test_dataset_upload import run_next
from tests.nas.test_transfer import CLASSIFIER, SPACE, NotATensor, imagenet_checkpoint
from workers.runner import Runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"space": SPACE, "dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1,
        "bn_recal_images": 64, "epoch_validation": False}  # fmt: skip


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[tuple[ServiceContext, TestClient, Users]]:
    from api.app import create_app

    root = tmp_path / "data_root"
    root.mkdir()
    ctx = make_context(tmp_path / "home")
    ctx = dataclasses.replace(ctx, settings=ctx.settings.model_copy(update={"data_roots": (root,)}))
    users = make_users(ctx.db)
    with TestClient(create_app(context=ctx)) as client:
        yield ctx, client, users
    ctx.db.dispose()


def train(client: TestClient, users: Users, init_from: dict[str, Any], who: str = "a") -> Any:
    return client.post("/v1/supernets", json={"config": TINY | {"init_from": init_from}}, headers=getattr(users, who))


def stored(ctx: ServiceContext) -> tuple[int, int, int]:
    """Jobs, uploaded-checkpoint artefacts, and files under the store's checkpoints/ folder."""
    with ctx.db.reader() as s:
        jobs = s.scalar(select(func.count()).select_from(Job))
        artifacts = s.scalar(select(func.count()).select_from(Artifact).where(Artifact.job_id.is_(None)))
    folder = ctx.settings.artifacts_path / "checkpoints"
    files = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
    return int(jobs or 0), int(artifacts or 0), files


def test_train_from_an_uploaded_ofa_checkpoint_then_from_that_supernet(
    rest: tuple[ServiceContext, TestClient, Users], tmp_path: Path
) -> None:
    ctx, client, users = rest
    source = imagenet_checkpoint(tmp_path / "ofa.pth")
    body = (tmp_path / "ofa.pth").read_bytes()
    uploaded = client.post("/v1/checkpoints", content=body, headers=users.a)
    assert uploaded.status_code == 201, uploaded.text
    checkpoint = uploaded.json()
    assert (checkpoint["space"], checkpoint["in_channels"], checkpoint["num_classes"], checkpoint["tensors"]) == (
        SPACE, 3, 1000, 475)  # fmt: skip
    assert uploaded.headers["Location"] == f"/v1/checkpoints/{checkpoint['id']}"
    again = client.post("/v1/checkpoints", content=body, headers=users.a)
    assert (again.status_code, again.json()["id"]) == (200, checkpoint["id"])
    assert client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=users.a).json() == checkpoint
    assert client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=users.b).status_code == 404

    queued = train(client, users, {"artifact_id": checkpoint["id"]})
    assert queued.status_code == 202, queued.text
    result = run_next(ctx)
    report = result["transfer"]
    assert (report["loaded"], report["adapted"], report["initialised"]) == (472, 1, 2)
    assert report["adapted_tensors"].keys() == {"first_conv.conv.weight"}
    assert report["initialised_tensors"].keys() == CLASSIFIER
    assert client.get(f"/v1/jobs/{queued.json()['id']}", headers=users.a).json()["result"]["transfer"] == report
    supernet = client.get(f"/v1/supernets/{result['supernet_id']}", headers=users.a).json()
    assert supernet["metrics"]["transfer"] == report
    assert supernet["config"]["init_from"]["artifact_id"] == checkpoint["id"]
    # two small steps later, the loaded weights are still the checkpoint's, nearly (an independent init: ~0)
    with ctx.db.reader() as s:
        row = s.get(Supernet, result["supernet_id"])
        assert row is not None and row.checkpoint is not None
        artifact = s.get(Artifact, row.checkpoint["weights.safetensors"])
        assert artifact is not None
        weights_key = artifact.key
    from safetensors.torch import load_file

    trained = load_file(str(ctx.settings.artifacts_path / weights_key))
    for key in ("blocks.20.conv.point_linear.conv.conv.weight", "feature_mix_layer.conv.weight"):
        assert torch.cosine_similarity(trained[key].flatten(), source[key].flatten(), dim=0) > 0.9, key
    assert trained["classifier.linear.weight"].shape == (10, source["classifier.linear.weight"].shape[1])

    # the same space, the same data: every tensor of the earlier supernet loads as it is
    queued = train(client, users, {"supernet_id": result["supernet_id"]})
    assert queued.status_code == 202, queued.text
    report = run_next(ctx)["transfer"]
    assert (report["loaded"], report["adapted"], report["initialised"]) == (475, 0, 0)

    # a server path inside the data roots
    path = ctx.settings.data_roots[0] / "ofa.pth"
    path.write_bytes(body)
    queued = train(client, users, {"checkpoint": str(path)})
    assert queued.status_code == 202, queued.text
    assert run_next(ctx)["transfer"]["loaded"] == 472


def test_bad_checkpoints_and_references_are_refused_and_nothing_is_stored(
    rest: tuple[ServiceContext, TestClient, Users], tmp_path: Path
) -> None:
    ctx, client, users = rest
    for content, reason in (
        (b"PK\x03\x04 not really a zip", "a corrupt PyTorch checkpoint"),
        (b"certainly not a checkpoint", "neither a PyTorch checkpoint"),
    ):
        refused = client.post("/v1/checkpoints", content=content, headers=users.a)
        assert refused.status_code == 422 and refused.json()["field"] == "body", refused.text
        assert reason in refused.json()["message"]
    torch.save({"w": NotATensor()}, tmp_path / "pickled.pth")
    refused = client.post("/v1/checkpoints", content=(tmp_path / "pickled.pth").read_bytes(), headers=users.a)
    assert refused.status_code == 422 and "objects other than tensors" in refused.json()["message"]
    broken = imagenet_checkpoint(tmp_path / "ofa.pth")
    broken["blocks.5.conv.depth_conv.conv.conv.weight"] = torch.zeros(1, 1, 7, 7)
    torch.save(broken, tmp_path / "broken.pth")
    refused = client.post("/v1/checkpoints", content=(tmp_path / "broken.pth").read_bytes(), headers=users.a)
    assert refused.status_code == 422, refused.text
    assert "fits no registered space" in refused.json()["message"]
    assert "blocks.5.conv.depth_conv.conv.conv.weight: checkpoint shape [1, 1, 7, 7]" in refused.json()["message"]
    assert stored(ctx) == (0, 0, 0)

    # the 32 px skeleton at other widths (the demo preset) into the 32 px preset: refused at submission
    imagenet_checkpoint(tmp_path / "demo.pth", space=DEMO_SPACE)
    other = client.post("/v1/checkpoints", content=(tmp_path / "demo.pth").read_bytes(), headers=users.a).json()
    assert other["space"] == DEMO_SPACE
    theirs = client.post("/v1/checkpoints", content=(tmp_path / "ofa.pth").read_bytes(), headers=users.b).json()
    with ctx.db.session() as s:
        supernet = Supernet(user_id=users.b_id, space=SPACE, dataset="demo", strategy="sandwich", config={},
                            checkpoint={"weights.safetensors": theirs["id"]})  # fmt: skip
        s.add(supernet)
        s.flush()
        bobs_supernet = supernet.id
    cases = [
        ({"artifact_id": other["id"]}, 422, "artifact_id", f"of space {DEMO_SPACE}, and config.space is {SPACE}"),
        ({"artifact_id": theirs["id"]}, 404, "artifact_id", "not found"),
        ({"artifact_id": 999}, 404, "artifact_id", "not found"),
        ({"supernet_id": bobs_supernet}, 404, "supernet_id", "not found"),
        ({"supernet_id": 999}, 404, "supernet_id", "not found"),
        ({"checkpoint": str(tmp_path / "ofa.pth")}, 422, "checkpoint", "must lie inside a data root"),
        ({"checkpoint": "../../etc/passwd"}, 422, "checkpoint", "must lie inside a data root"),
    ]
    for init_from, status, field, message in cases:
        answer = train(client, users, init_from)
        assert answer.status_code == status, (init_from, answer.text)
        assert answer.json()["field"] == f"config.init_from.{field}", answer.text
        assert message in answer.json()["message"], answer.text
    two = train(client, users, {"artifact_id": other["id"], "supernet_id": bobs_supernet})
    assert two.status_code == 422 and "exactly one of" in two.text
    # bob's own supernet of this space is accepted for him
    assert train(client, users, {"supernet_id": bobs_supernet}, who="b").status_code == 202
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1


def test_a_server_checkpoint_of_another_width_fails_the_job_before_training(
    rest: tuple[ServiceContext, TestClient, Users],
) -> None:
    ctx, client, users = rest
    path = ctx.settings.data_roots[0] / "demo.pth"
    imagenet_checkpoint(path, space=DEMO_SPACE)
    assert train(client, users, {"checkpoint": str(path)}).status_code == 202  # its content is read by the worker
    done = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0).run_once()
    assert done is not None and done.status.value == "FAILED"
    message = done.error_message or ""
    assert "another space or width" in message and "first_conv.conv.weight" in message
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Supernet)) == 0


def test_cli_submit_supernet_init_from(live_cli: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imagenet_checkpoint(tmp_path / "ofa.pth")
    args = ["submit", "supernet", "--space", SPACE, "--dataset", "demo", "--epochs", "1"]
    assert main([*args, "--init-from", str(tmp_path / "ofa.pth")]) == 0
    out = capsys.readouterr().out
    assert f"as checkpoint 1 ({SPACE}, 3 channel(s), 1000 classes)" in out and "queued job 1" in out
    with live_cli.ctx.db.reader() as s:
        job = s.get(Job, 1)
        assert job is not None and job.params["config"]["init_from"]["artifact_id"] == 1
    assert main([*args, "--init-from", "supernet:x"]) == 1
    assert "expected supernet:N" in capsys.readouterr().err
    assert main([*args, "--init-from", "supernet:7"]) == 1
    assert "config.init_from.supernet_id" in capsys.readouterr().err
    assert main([*args, "--init-from", "/srv/not/here.pth"]) == 1  # a server path: this service has no data roots
    assert "config.init_from.checkpoint" in capsys.readouterr().err

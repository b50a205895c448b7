"""Fine-tuning a delivered subnet through REST: a new subnet whose shown accuracy is its downloaded bundle's.

A tiny supernet is trained through the API, a subnet of it is registered as an export would, and
``POST /v1/subnets/{id}/finetune`` queues the job. The new subnet's bundle is downloaded over REST
and scored in ONNX Runtime with the preprocessing its arch.json declares (`user_top1`, independent
of our scoring code), which must give the validated accuracy the API shows beside it.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.context import ServiceContext
from cli import main
from nas.spaces import get_space
from store.models import Artifact, Job, Subnet, Supernet
from tests.api_helpers import Users, serving
from tests.e2e.test_delivery import run_job, user_top1
from workers.kinds import validate_params
from workers.kinds.finetune import FinetuneParams
from workers.runner import Runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "ofa_mbv3_d234_e346_k357_32px"
FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "retries": 0}
TINY = {"space": SPACE, "dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1,
        "bn_recal_images": 64}  # fmt: skip
QUICK = {"epochs": 2, "batch_size": 32, "train_images": 320, "lr": 0.05, "measure": FAST}


@pytest.fixture(scope="module")
def supernet_id(ctx: ServiceContext, client: TestClient, users: Users) -> int:
    train = client.post("/v1/supernets", json={"name": "tiny", "config": TINY}, headers=users.a)
    assert train.status_code == 202, train.text
    return int(run_job(ctx, client, users, train.json())["supernet_id"])


def add_subnet(ctx: ServiceContext, user_id: int, supernet_id: int) -> int:
    """A subnet of the supernet, registered as an export registers one (no search)."""
    space = get_space(SPACE)
    arch = space.canonical({**space.sample(0), "r": space.resolutions[-1]})
    with ctx.db.session() as s:
        row = Subnet(user_id=user_id, supernet_id=supernet_id, arch_key=space.key(arch), arch=arch,
                     validated={"accuracy": 0.5})  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


def count(ctx: ServiceContext, model: Any) -> int:
    with ctx.db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_finetuned_subnet_is_delivered_with_the_accuracy_of_its_own_bundle(
    ctx: ServiceContext, client: TestClient, users: Users, supernet_id: int
) -> None:
    parent = add_subnet(ctx, users.a_id, supernet_id)
    queued = client.post(f"/v1/subnets/{parent}/finetune", json=QUICK, headers=users.a)
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert queued.headers["Location"] == f"/v1/jobs/{job['id']}" and job["kind"] == "finetune_subnet"
    assert job["params"]["targets"] == ["cpu-ort"] and job["params"]["subnet_id"] == parent
    result = run_job(ctx, client, users, job)
    assert result["parent_id"] == parent and result["resumed_after_epochs"] == 0
    assert [h["epoch"] for h in result["history"]] == [0, 1]

    shown = client.get(f"/v1/subnets/{result['subnet_id']}", headers=users.a)
    assert shown.status_code == 200
    subnet = shown.json()
    assert subnet["parent_id"] == parent and subnet["search_id"] is None and subnet["supernet_id"] == supernet_id
    with ctx.db.reader() as s:
        parent_row = s.get(Subnet, parent)
        assert parent_row is not None and subnet["arch"] == parent_row.arch
    validated = subnet["validated"]
    assert validated["latency:cpu-ort"] > 0 and validated["macs"] > 0
    assert validated["accuracy"] == result["validated"]["accuracy"]

    download = client.get(f"/v1/subnets/{subnet['id']}/download", params={"format": "bundle"}, headers=users.a)
    assert download.status_code == 200
    top1, images = user_top1(download.content)
    assert abs(top1 - validated["accuracy"]) <= 1 / images + 1e-9, f"bundle {top1}, shown {validated['accuracy']}"
    print(f"before {result['val_top1_before']:.3f}, history {result['history']}, bundle {top1:.4f}")
    assert top1 > 0.2, "the fine-tuned subnet must beat chance (10 classes) for the comparison to mean anything"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        meta = json.loads(archive.read("arch.json"))
    assert meta["arch"] == subnet["arch"] and meta["bn_calibration"]["images"] == 64
    tuning = meta["fine_tuning"]
    assert tuning["parent_subnet_id"] == parent and tuning["epochs"] == 2 and tuning["kd_ratio"] == 1.0
    assert tuning["teacher"] == "largest subnet" and tuning["history"] == result["history"]
    onnx = client.get(f"/v1/subnets/{subnet['id']}/download", params={"format": "onnx"}, headers=users.a)
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        assert onnx.content == archive.read("model.onnx")


def test_another_users_subnet_is_404_and_queues_nothing(
    ctx: ServiceContext, client: TestClient, users: Users, supernet_id: int
) -> None:
    parent = add_subnet(ctx, users.a_id, supernet_id)
    jobs_before = count(ctx, Job)
    for path in (f"/v1/subnets/{parent}/finetune", "/v1/subnets/999999/finetune"):
        r = client.post(path, json={"epochs": 1}, headers=users.b)
        assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    assert count(ctx, Job) == jobs_before

    # the job checks the owner again: queued directly for another user, it fails and stores no subnet
    subnets_before = count(ctx, Subnet)
    job, _ = ctx.queue.submit("finetune_subnet", validate_params("finetune_subnet", {"subnet_id": parent, **QUICK}),
                              user_id=users.b_id)  # fmt: skip
    done = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0).run_once()
    assert done is not None and done.id == job.id and done.status.value == "FAILED"
    assert done.error_code == "not_found" and f"subnet_id {parent}" in (done.error_message or "")
    assert count(ctx, Subnet) == subnets_before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1, "lr": -0.1}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"kd_ratio": -1}, "kd_ratio"),
        ({"seed": -1}, "seed"),
        ({"epochs": 1, "epoch": 2}, "epoch"),
        ({"measure": {"runs": 0}}, "measure"),
        ({"targets": ["cpu-ort", "cpu-ort"]}, "targets"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(
    ctx: ServiceContext, client: TestClient, users: Users, supernet_id: int, body: dict[str, Any], field: str
) -> None:
    parent = add_subnet(ctx, users.a_id, supernet_id)
    r = client.post(f"/v1/subnets/{parent}/finetune", json=body, headers=users.a)
    assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_unknown_target_is_404_and_a_supernet_without_checkpoint_409(
    ctx: ServiceContext, client: TestClient, users: Users, supernet_id: int
) -> None:
    parent = add_subnet(ctx, users.a_id, supernet_id)
    r = client.post(f"/v1/subnets/{parent}/finetune", json={"targets": ["nope"]}, headers=users.a)
    assert r.status_code == 404 and r.json()["field"] == "targets", r.text
    with ctx.db.session() as s:
        untrained = Supernet(user_id=users.a_id, space=SPACE, dataset="demo", strategy="sandwich", config=TINY)
        s.add(untrained)
        s.flush()
        untrained_id = untrained.id
    orphan = add_subnet(ctx, users.a_id, untrained_id)
    jobs_before = count(ctx, Job)
    r = client.post(f"/v1/subnets/{orphan}/finetune", json={"epochs": 1}, headers=users.a)
    assert r.status_code == 409 and r.json()["code"] == "not_ready", r.text
    assert f"supernet {untrained_id} has no checkpoint" in r.json()["message"]
    assert count(ctx, Job) == jobs_before


def test_cli_finetune_waits_and_prints_the_new_subnet_beside_its_parent(
    ctx: ServiceContext, users: Users, supernet_id: int, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = add_subnet(ctx, users.a_id, supernet_id)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    def worker() -> None:  # the service's worker: runs the job once the CLI has queued it
        runner = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0)
        deadline = time.monotonic() + 300
        while runner.run_once() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    token = users.a["Authorization"].removeprefix("Bearer ")
    with serving(ctx, port) as url:
        code = main(["finetune", str(parent), "--epochs", "1", "--batch-size", "32", "--wait", "--server", url,
                     "--token", token])  # fmt: skip
        out = capsys.readouterr().out
        assert main(["finetune", str(parent), "--epochs", "0", "--server", url, "--token", token]) == 1
        assert "epochs" in capsys.readouterr().err
    thread.join(timeout=10)
    assert code == 0, out
    new = re.search(rf"subnet (\d+) \(fine-tuned from subnet {parent}\)", out)
    assert new is not None, out
    assert "(parent 0.5000)" in out and re.search(r"latency:cpu-ort: [0-9.]+ ms \(parent -\)", out), out
    with ctx.db.reader() as s:
        row = s.get(Subnet, int(new.group(1)))
        assert row is not None and row.parent_id == parent and row.validated is not None
    assert f"accuracy: {row.validated['accuracy']:.4f} (parent 0.5000)" in out


def test_a_reclaimed_job_resumes_from_the_checkpoint_of_its_first_attempt(
    ctx: ServiceContext, users: Users, supernet_id: int, tmp_path: Path
) -> None:
    from nas.train import load_run
    from nas.train.finetune import FinetuneEvent, finetune_subnet

    parent = add_subnet(ctx, users.a_id, supernet_id)
    params = validate_params("finetune_subnet", {"subnet_id": parent, **QUICK})
    job, _ = ctx.queue.submit("finetune_subnet", params, user_id=users.a_id)
    with ctx.db.reader() as s:
        supernet, parent_row = s.get(Supernet, supernet_id), s.get(Subnet, parent)
        assert supernet is not None and supernet.checkpoint is not None and parent_row is not None
        files = {name: s.get(Artifact, i) for name, i in supernet.checkpoint.items()}
    ctx.store.fetch_tree({n: (a.key, a.sha256) for n, a in files.items() if a}, tmp_path / "supernet" / "checkpoint")

    def died(event: FinetuneEvent) -> None:  # the first attempt's worker died early in its second epoch
        if (event.epoch, event.step) == (1, 0):
            raise SystemExit

    config = FinetuneParams.model_validate(params).config()
    with pytest.raises(SystemExit):
        finetune_subnet(load_run(tmp_path / "supernet").supernet, parent_row.arch, config,
                        out_dir=ctx.settings.runs_path / f"job-{job.id}" / "finetune", progress=died)  # fmt: skip
    done = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0).run_once()
    assert done is not None and done.id == job.id and done.status.value == "SUCCEEDED", done and done.error_message
    result = done.result or {}
    assert result["resumed_after_epochs"] == 1 and len(result["history"]) == 2
    epochs = [e.data["epoch"] for e in ctx.queue.events(job.id) if e.type == "progress" and "epoch" in e.data]
    assert epochs and min(epochs) == 1, "the job starts where the first attempt's checkpoint ends"

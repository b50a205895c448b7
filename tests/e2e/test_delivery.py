"""What a user downloads is what we measured: through REST, every front member's bundle scores its stored accuracy.

The check is made the way a user would make it, independently of our scoring code: the bundle is
downloaded over REST, its ONNX model run in ONNX Runtime on the demo test split, with the
preprocessing its own arch.json declares (done here with torch's resize), and the top-1 compared
with the validated accuracy the API shows beside it.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from api.context import ServiceContext
from nas.data import load_dataset
from tests.api_helpers import Users
from workers.kinds import validate_params
from workers.runner import Runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACE = "ofa_mbv3_d234_e346_k357_32px"
FAST = {"warmup_runs": 1, "warmup_seconds": 0.0, "runs": 3, "retries": 0}


def run_job(ctx: ServiceContext, client: TestClient, users: Users, job: dict[str, Any]) -> dict[str, Any]:
    """Run the queued job `job` in this process and return its result as the API shows it."""
    run_next(ctx, job["id"])
    state = client.get(f"/v1/jobs/{job['id']}", headers=users.a).json()
    assert state["status"] == "SUCCEEDED", state
    return dict(state["result"])


def run_next(ctx: ServiceContext, job_id: int) -> None:
    done = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0).run_once()
    assert done is not None and done.id == job_id and done.status.value == "SUCCEEDED", done


def user_top1(
    bundle_zip: bytes, images: np.ndarray | None = None, labels: np.ndarray | None = None
) -> tuple[float, int]:
    """Top-1 of a downloaded bundle on a test split (default: the demo's), as a user would compute it from arch.json.

    Args:
        bundle_zip: the downloaded bundle.
        images: uint8 (N, H, W, C) test images.
        labels: their labels.
    """
    with zipfile.ZipFile(io.BytesIO(bundle_zip)) as archive:
        meta = json.loads(archive.read("arch.json"))
        model = archive.read("model.onnx")
    if images is None or labels is None:
        data = load_dataset("demo")
        images, labels = data.test_images, data.test_labels
    inp = meta["input"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() * inp["pixel_scale"]
    x = (x - torch.tensor(inp["mean"])[:, None, None]) / torch.tensor(inp["std"])[:, None, None]
    assert inp["resize"] == "bilinear"
    x = torch.nn.functional.interpolate(x, size=(inp["size"], inp["size"]), mode="bilinear", align_corners=False)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (logits,) = session.run([meta["output"]["name"]], {inp["name"]: x.numpy()})
    return float(np.mean(logits.argmax(1) == labels)), len(labels)


def test_every_downloaded_front_member_scores_its_validated_accuracy(
    ctx: ServiceContext, client: TestClient, users: Users
) -> None:
    config = {"space": SPACE, "dataset": "demo", "epochs": 2, "batch_size": 32, "num_random": 1,
              "bn_recal_images": 200}  # fmt: skip
    train = client.post("/v1/supernets", json={"name": "tiny", "config": config}, headers=users.a)
    assert train.status_code == 202, train.text
    supernet_id = run_job(ctx, client, users, train.json())["supernet_id"]
    table, _ = ctx.queue.submit(
        "build_latency_table",
        validate_params("build_latency_table", {"target": "cpu-ort", "space": SPACE, "samples": 2, "settings": FAST}),
    )  # a quickly measured table: the search then needs none of its own
    run_next(ctx, table.id)

    body = {"supernet_id": supernet_id, "objectives": ["accuracy", "latency"], "targets": ["cpu-ort"],
            "algorithm": "nsga2", "budget": 200, "predictor_samples": 10, "export_limit": 4}  # fmt: skip
    created = client.post("/v1/searches", json=body, headers=users.a)
    assert created.status_code in (201, 202), created.text
    run_job(ctx, client, users, {"id": created.json()["job_id"]})
    front = client.get(f"/v1/searches/{created.json()['id']}/pareto", headers=users.a).json()["points"]
    assert front, "the search must deliver a front"

    stored_bn_changed = False
    for point in front:
        download = client.get(f"/v1/subnets/{point['subnet_id']}/download", params={"format": "bundle"},
                              headers=users.a)  # fmt: skip
        assert download.status_code == 200
        top1, images = user_top1(download.content)
        shown = point["validated"]["accuracy"]
        assert abs(top1 - shown) <= 1 / images + 1e-9, f"bundle scores {top1}, the API shows {shown}"
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            meta = json.loads(archive.read("arch.json"))
        assert meta["arch"] == point["arch"]
        assert meta["bn_calibration"]["dataset"] == "demo" and meta["bn_calibration"]["split"] == "train"
        assert meta["bn_calibration"]["images"] == 200 and meta["bn_calibration"]["seed"] == 0
        print(f"bundle top1 {top1:.4f}, shown {shown:.4f}")
        stored_bn_changed = stored_bn_changed or top1 > 0.5
    assert stored_bn_changed, "at least one subnet must be better than chance for the comparison to mean anything"

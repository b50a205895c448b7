"""Bring your own data, end to end: upload -> train -> search -> download, through REST and through the CLI.

The data are real images (scikit-learn's 8x8 digits) in the files a user would upload. Each
downloaded bundle is scored by ONNX Runtime on the uploaded test split, with the preprocessing its
arch.json declares, and must score the validated accuracy shown beside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.context import ServiceContext
from cli import main
from nas.spaces.ofa_mbv3 import DEMO_SPACE
from tests.api_helpers import Users, make_context, make_users
from tests.cli.test_client import Live
from tests.dataset_files import digits, digits_imagefolder_zip, digits_npz
from tests.e2e.test_delivery import user_top1
from workers.runner import Runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGES = 1000
TRAIN = {
    "space": DEMO_SPACE,
    "epochs": 6,
    "lr": 0.1,
    "warmup_epochs": 0.2,
    "batch_size": 32,
    "num_random": 1,
    "bn_recal_images": 100,
}
SEARCH = {"objectives": ["accuracy", "macs"], "algorithm": "nsga2", "budget": 100, "predictor_samples": 10,
          "export_limit": 2}  # fmt: skip


def run_next(ctx: ServiceContext) -> dict[str, Any]:
    """Run the next queued job in this process; it must succeed. Its result."""
    done = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, progress_interval_s=0).run_once()
    assert done is not None and done.status.value == "SUCCEEDED", done
    return dict(done.result or {})


def check_bundle(bundle: bytes, shown: float, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """The bundle's top-1 on the uploaded test images; it must be the accuracy shown (to one image)."""
    top1, images = user_top1(bundle, x_test[..., None], y_test)
    assert abs(top1 - shown) <= 1 / images + 1e-9, f"bundle scores {top1}, the service shows {shown}"
    return top1


@pytest.fixture
def rest(tmp_path: Path) -> Iterator[tuple[ServiceContext, TestClient, Users]]:
    from api.app import create_app

    ctx = make_context(tmp_path / "home", sse_poll_s=0.01)
    users = make_users(ctx.db)
    with TestClient(create_app(context=ctx)) as client:
        yield ctx, client, users
    ctx.db.dispose()


def test_upload_train_search_download_over_rest(rest: tuple[ServiceContext, TestClient, Users], tmp_path: Path) -> None:
    ctx, client, users = rest
    upload = digits_npz(tmp_path / "digits.npz", IMAGES)
    stored = client.post("/v1/datasets", params={"name": "digits"}, content=upload.read_bytes(), headers=users.a)
    assert stored.status_code == 201, stored.text
    dataset = stored.json()
    assert (dataset["format"], dataset["train_images"], dataset["test_images"]) == ("npz", IMAGES, IMAGES // 4)

    train = client.post("/v1/supernets", json={"name": "mine", "dataset_id": dataset["id"], "config": TRAIN},
                        headers=users.a)  # fmt: skip
    assert train.status_code == 202, train.text
    supernet_id = run_next(ctx)["supernet_id"]
    supernet = client.get(f"/v1/supernets/{supernet_id}", headers=users.a).json()
    assert supernet["dataset_id"] == dataset["id"] and supernet["dataset"] == f"dataset:{dataset['id']}"
    assert client.get(f"/v1/supernets/{supernet_id}", headers=users.b).status_code == 404

    search = client.post("/v1/searches", json={"supernet_id": supernet_id, **SEARCH}, headers=users.a)
    assert search.status_code in (201, 202), search.text
    run_next(ctx)
    front = client.get(f"/v1/searches/{search.json()['id']}/pareto", headers=users.a).json()["points"]
    assert front, "the search must deliver a front"
    _, _, x_test, y_test = digits(IMAGES)
    best = 0.0
    for point in front:
        bundle = client.get(f"/v1/subnets/{point['subnet_id']}/download", params={"format": "bundle"},
                            headers=users.a)  # fmt: skip
        assert bundle.status_code == 200
        best = max(best, check_bundle(bundle.content, point["validated"]["accuracy"], x_test, y_test))
    # Chance is 0.1; on 250 test images its standard deviation is 0.02: a bundle over 0.2 learnt from the upload.
    assert best > 0.2, "six epochs on 1,000 digits must beat chance for the comparison to mean something"


@pytest.fixture
def live(live_cli: Live) -> Live:
    return live_cli


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``hwnas ARGS``; it must exit 0. Its standard output."""
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_upload_train_search_download_with_the_cli(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = digits_imagefolder_zip(tmp_path / "digits.zip", IMAGES)
    out = cli(capsys, "dataset", "upload", str(archive))
    match = re.search(r"dataset (\d+) \(imagefolder\): 1,000 training and 250 test images of 8 px", out)
    assert match, out
    assert "hwnas submit supernet --dataset-id" in out
    dataset_id = match.group(1)
    assert re.search(rf"^{dataset_id}\s+digits\s+imagefolder\s+1,000\s+250", cli(capsys, "ls", "datasets"), re.M)

    config = tmp_path / "train.json"
    # Two epochs: this test checks the CLI's path and the shown-vs-delivered parity; the REST test checks learning.
    config.write_text(json.dumps({"config": {**TRAIN, "epochs": 2}}))
    cli(capsys, "submit", "supernet", "--file", str(config), "--dataset-id", dataset_id)
    supernet_id = run_next(live.ctx)["supernet_id"]

    body = tmp_path / "search.json"
    body.write_text(json.dumps({"supernet_id": supernet_id, **SEARCH}))
    out = cli(capsys, "submit", "search", "--file", str(body))
    search_id = re.search(r"queued search (\d+)", out).group(1)  # type: ignore[union-attr]
    run_next(live.ctx)

    front = json.loads(cli(capsys, "pareto", search_id, "--format", "json"))["points"]
    assert front
    # The zip holds the test images in class-folder order: score on them in that order.
    _, _, x_test, y_test = digits(IMAGES)
    order = np.argsort(y_test, kind="stable")
    for point in front:
        path = tmp_path / f"{point['subnet_id']}.zip"
        cli(capsys, "download", str(point["subnet_id"]), "--format", "bundle", "-o", str(path))
        check_bundle(path.read_bytes(), point["validated"]["accuracy"], x_test[order], y_test[order])

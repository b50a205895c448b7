"""The training and export job kinds, for real on the bundled demo set; a worker killed mid-training resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nas.bundle_eval import score_bundle
from nas.data import load_dataset
from nas.export import load_bundle
from store.artifacts import LocalArtifactStore, read_artifact
from store.db import Database, upgrade
from store.models import Artifact, Subnet, Supernet
from store.queue import JobQueue
from workers.kinds import validate_params
from workers.runner import Runner

TINY = {"dataset": "demo", "epochs": 2, "batch_size": 32, "train_images": 64, "num_random": 1, "bn_recal_images": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def test_train_then_export_a_subnet(sqlite_db: Database, tmp_path: Path) -> None:
    queue = JobQueue(sqlite_db)
    store = LocalArtifactStore(tmp_path / "artifacts")
    runner = Runner(queue, store, tmp_path / "runs", lease_s=30, progress_interval_s=0)
    job, _ = queue.submit("train_supernet", validate_params("train_supernet", {"name": "digits", "config": TINY}))
    assert job.params["config"]["lr"] == 0.1, "the preset's defaults are filled in"
    trained = runner.run_once()
    assert trained is not None and trained.status.value == "SUCCEEDED", trained and trained.error_message
    assert trained.result is not None and trained.result["epochs"] == 2 and trained.result["resumed_after_epochs"] == 0
    assert trained.progress is not None and trained.progress["phase"] == "sandwich"
    with sqlite_db.reader() as s:
        supernet = s.scalars(select(Supernet)).one()
        files = {a.key.rsplit("/", 1)[1]: a for a in s.scalars(select(Artifact).where(Artifact.kind == "checkpoint"))}
    assert supernet.id == trained.result["supernet_id"] and supernet.job_id == job.id and supernet.name == "digits"
    assert supernet.checkpoint is not None and set(supernet.checkpoint) == set(files) >= {"weights.safetensors"}
    assert json.loads(read_artifact(store, files["state.json"]))["state"]["epoch"] == 0

    export, _ = queue.submit("export_subnet", {"supernet_id": supernet.id, "arch": "min"})
    exported = runner.run_once()
    assert exported is not None and exported.status.value == "SUCCEEDED", exported and exported.error_message
    assert exported.result is not None
    with sqlite_db.reader() as s:
        subnet = s.scalars(select(Subnet)).one()
        bundle = s.get(Artifact, subnet.bundle_artifact_id)
    assert subnet.id == exported.result["subnet_id"] and subnet.supernet_id == supernet.id and bundle is not None
    assert bundle.kind == "bundle" and bundle.job_id == export.id
    read_artifact(store, bundle)
    loaded = load_bundle(store.path(bundle.key))
    assert loaded.meta["arch"] == subnet.arch and loaded.meta["bn_calibration"]["split"] == "train"
    assert loaded.meta["class_names"] == [str(d) for d in range(10)]  # the supernet's, recorded in the bundle
    test = load_dataset("demo")
    scored = score_bundle(store.path(bundle.key), test.test_images, test.test_labels)
    assert subnet.validated is not None and subnet.validated["accuracy"] == scored.top1  # the delivered file's

    queue.submit("export_subnet", {"supernet_id": 999, "arch": "max"})
    failed = runner.run_once()
    assert failed is not None and (failed.status.value, failed.error_code) == ("FAILED", "not_found")
    assert failed.error_message == "supernet_id 999: no such supernet"


def test_bad_training_parameters_are_refused_at_submission() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="learning_rate"):
        validate_params("train_supernet", {"config": {"learning_rate": 0.1}})
    with pytest.raises(KeyError, match="unknown job kind 'nope'"):
        validate_params("nope", {})


def _hwnas() -> list[str]:
    script = Path(sys.executable).parent / "hwnas"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def _epochs_done(run_dir: Path) -> int:
    state = run_dir / "train" / "checkpoint" / "state.json"
    try:
        return len(json.loads(state.read_text())["state"]["history"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_a_worker_killed_mid_training_is_replaced_and_training_resumes(sqlite_db: Database, tmp_path: Path) -> None:
    """SIGKILL a `hwnas worker` process after its first checkpoint; another worker reclaims the job after the lease
    expires, continues from that checkpoint, and the results are recorded once."""
    queue = JobQueue(sqlite_db)
    config = {**TINY, "epochs": 4}
    job, _ = queue.submit("train_supernet", {"config": config}, max_attempts=3)
    env = {
        **os.environ, "HWNAS_HOME": str(tmp_path), "HWNAS_DATABASE_URL": str(sqlite_db.url), "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    worker = subprocess.Popen(
        [*_hwnas(), "worker", "--once", "--in-process", "--lease", "2", "--poll", "0.2", "--worker-id", "doomed"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / f"job-{job.id}"
    try:
        deadline = time.monotonic() + 240
        while _epochs_done(run_dir) < 1:
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed_after = _epochs_done(run_dir)
    assert 1 <= killed_after < 4, "killed mid-training"
    running = queue.get(job.id)
    assert running.status.value == "RUNNING" and running.lease_owner == "doomed"

    store = LocalArtifactStore(tmp_path / "artifacts")
    runner = Runner(queue, store, tmp_path / "runs", lease_s=2, poll_s=0.2, worker_id="rescuer", progress_interval_s=0)
    assert runner.serve(max_jobs=1) == 1
    done = queue.get(job.id)
    assert done.status.value == "SUCCEEDED" and done.attempts == 2 and done.result is not None
    assert done.result["epochs"] == 4 and done.result["resumed_after_epochs"] >= killed_after
    resumed = [e for e in queue.events(job.id) if e.attempt == 2 and e.type == "progress"]
    assert resumed[0].data["epoch"] == done.result["resumed_after_epochs"], "the second attempt starts where it was"
    logs = [e.data["message"] for e in queue.events(job.id) if e.type == "log"]
    assert logs == [
        f"attempt 2: resuming from the checkpoint written after epoch {done.result['resumed_after_epochs']}"
    ]
    assert [(h.to_status.value, h.worker) for h in queue.history(job.id)] == [
        ("QUEUED", None), ("RUNNING", "doomed"), ("RUNNING", "rescuer"), ("SUCCEEDED", "rescuer"),
    ]  # fmt: skip
    with sqlite_db.reader() as s:
        assert s.scalar(select(func.count()).select_from(Supernet)) == 1
        keys = list(s.scalars(select(Artifact.key)))
    assert len(keys) == len(set(keys)) == len(done.result["files"])

"""Supernet training on Ray: the loop of `nas.train` under Ray Train's TorchTrainer, data-parallel on CPUs or GPUs.

Every worker runs `train_supernet` on its share of each batch; gradients are averaged over the
process group that TorchTrainer sets up (gloo on CPUs, NCCL on GPUs), so all workers hold the same
weights. Rank 0 writes the checkpoints and its events, one JSON line each, to ``progress.jsonl``
(which the driver follows): ``start`` when the worker group (re)starts, with the epochs its
checkpoint holds, and ``progress`` after every step. When a worker dies, Ray Train restarts the
group (up to `max_failures` times) and every worker resumes from the last epoch's checkpoint.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.train import DataParallel, ProgressEvent, TrainConfig, TrainRun, load_run, train_supernet
from nas.train.checkpoint import find_checkpoint
from nas.train.loop import ProgressCallback
from workers.capacity import Capacity, unplaceable

PROGRESS_FILE = "progress.jsonl"
MAX_FAILURES = 3
"""Worker-group restarts after a worker dies, before the training fails."""
StartCallback = Callable[[int], None]
"""Called when the workers start or restart, with the epochs already done (those they resume after)."""


def checkpoint_epochs(out_dir: Path) -> int:
    """The epochs the checkpoint in `out_dir` holds (0 without one)."""
    found = find_checkpoint(out_dir)
    return len(json.loads((found / "state.json").read_text())["state"]["history"]) if found else 0


def _worker_loop(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    import torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(loop_config["threads_per_worker"])
    out = Path(loop_config["out_dir"])
    progress_file = out / PROGRESS_FILE

    def write(type_: str, data: dict[str, Any]) -> None:
        with progress_file.open("a") as fp:
            fp.write(json.dumps({"type": type_, "data": data}) + "\n")

    if rank == 0:
        write("start", {"epochs": checkpoint_epochs(out)})
    run = train_supernet(
        TrainConfig.model_validate(loop_config["config"]),
        out,
        progress=(lambda event: write("progress", asdict(event))) if rank == 0 else None,
        parallel=DataParallel(rank, world),
        device=ray.train.torch.get_device() if loop_config["use_gpu"] else "cpu",
    )
    ray.train.report({"epochs": len(run.history), "loss": run.history[-1]["loss"] if run.history else None})


def _follow(
    path: Path,
    progress: ProgressCallback | None,
    on_start: StartCallback | None,
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    """Feed rank 0's events to the callbacks until `stop` is set, then read what is left.

    A callback's exception (e.g. the job is being cancelled) ends the following; it goes to `errors`.
    """
    position = 0
    while True:
        if path.exists():
            with path.open() as fp:
                fp.seek(position)
                for line in fp:
                    if not line.endswith("\n"):
                        break
                    position += len(line)
                    event = json.loads(line)
                    try:
                        if event["type"] == "start" and on_start is not None:
                            on_start(event["data"]["epochs"])
                        elif event["type"] == "progress" and progress is not None:
                            progress(ProgressEvent(**event["data"]))
                    except BaseException as error:
                        errors.append(error)
                        return
        if stop.is_set():
            return
        stop.wait(0.5)


def train_supernet_on_ray(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    num_workers: int = 2,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    resume: bool = True,
    max_failures: int = MAX_FAILURES,
    progress: ProgressCallback | None = None,
    on_start: StartCallback | None = None,
) -> TrainRun:
    """Train with `num_workers` workers under Ray Train (joins a local Ray unless one is running or RAY_ADDRESS is set).

    Args:
        config: the run's configuration.
        out_dir: the run directory; the workers must share it (one machine, or a shared filesystem).
        num_workers: Ray Train workers.
        use_gpu: one GPU per worker and NCCL; otherwise gloo on the CPUs.
        cpus_per_worker: CPUs each worker asks Ray for (its torch threads: the whole part, at least 1).
        resume: continue from the checkpoint in `out_dir` if there is one.
        max_failures: how many times a dead worker's group is restarted (each restart resumes from the
            last epoch's checkpoint).
        progress: called with rank 0's progress events (from a thread of this process).
        on_start: called when the workers start and after each restart, with the epochs already done.

    Returns:
        The run as `nas.train.load_run` reads it from the final checkpoint.

    Raises:
        JobError: ``no_gpu`` or ``insufficient_resources`` when the cluster cannot place the workers
            (Ray would wait for them forever).
        RuntimeError: the training failed (more than `max_failures` times).
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    problem = unplaceable(num_workers, cpus_per_worker, int(use_gpu), Capacity.of_ray())
    if problem is not None:
        raise problem
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    resources = {"CPU": cpus_per_worker} | ({"GPU": 1} if use_gpu else {})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "out_dir": str(out),
            "use_gpu": use_gpu,
            "threads_per_worker": max(1, int(cpus_per_worker)),
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=f"hwnas-train-{int(time.time())}",
            storage_path=str(out / "ray"),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    # The workers always resume (a restarted group must); a fresh run starts without a checkpoint.
    while not resume and (found := find_checkpoint(out)) is not None:
        shutil.rmtree(found)
    (out / PROGRESS_FILE).unlink(missing_ok=True)  # an earlier attempt's events
    stop, errors = threading.Event(), list[BaseException]()
    follower = threading.Thread(
        target=_follow, args=(out / PROGRESS_FILE, progress, on_start, stop, errors), daemon=True
    )
    follower.start()
    try:
        result = trainer.fit()
    except TrainingFailedError as error:
        raise RuntimeError(f"training on Ray failed: {error}") from error
    finally:
        stop.set()
        follower.join()
    if errors:
        raise errors[0]
    if result.error is not None:
        raise RuntimeError(f"training on Ray failed: {result.error}") from result.error
    return load_run(out)

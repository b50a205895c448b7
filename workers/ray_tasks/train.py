"""Supernet training on Ray: the loop of `nas.train` under Ray Train's TorchTrainer, data-parallel on CPUs.

Every worker runs `train_supernet` on its share of each batch; gradients are averaged over the
gloo process group that TorchTrainer sets up, so all workers hold the same weights. Rank 0
writes the checkpoints (and progress events, one JSON line each, to ``progress.jsonl``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nas.train import DataParallel, ProgressEvent, TrainConfig, TrainRun, load_run, train_supernet
from nas.train.loop import ProgressCallback

PROGRESS_FILE = "progress.jsonl"


def _worker_loop(loop_config: dict[str, Any]) -> None:
    import ray.train
    import torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(loop_config["threads_per_worker"])
    out = Path(loop_config["out_dir"])
    progress_file = out / PROGRESS_FILE

    def write_progress(event: ProgressEvent) -> None:
        with progress_file.open("a") as fp:
            fp.write(json.dumps(asdict(event)) + "\n")

    run = train_supernet(
        TrainConfig.model_validate(loop_config["config"]),
        out,
        progress=write_progress if rank == 0 else None,
        resume=loop_config["resume"],
        parallel=DataParallel(rank, world),
    )
    ray.train.report({"epochs": len(run.history), "loss": run.history[-1]["loss"] if run.history else None})


def _follow(path: Path, callback: ProgressCallback, stop: threading.Event) -> None:
    position = 0
    while not stop.is_set():
        if path.exists():
            with path.open() as fp:
                fp.seek(position)
                for line in fp:
                    if line.endswith("\n"):
                        callback(ProgressEvent(**json.loads(line)))
                        position += len(line)
        stop.wait(0.5)


def train_supernet_on_ray(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    num_workers: int = 2,
    threads_per_worker: int = 1,
    resume: bool = True,
    progress: ProgressCallback | None = None,
) -> TrainRun:
    """Train with `num_workers` CPU workers under Ray Train (a local Ray unless RAY_ADDRESS is set).

    The workers must share `out_dir` (one machine, or a shared filesystem). Returns the run as
    `nas.train.load_run` reads it from the final checkpoint.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "out_dir": str(out),
            "resume": resume,
            "threads_per_worker": threads_per_worker,
        },
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"hwnas-train-{int(time.time())}", storage_path=str(out / "ray")),
    )
    stop = threading.Event()
    follower = None
    if progress is not None:
        follower = threading.Thread(target=_follow, args=(out / PROGRESS_FILE, progress, stop), daemon=True)
        follower.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        if follower is not None:
            follower.join()
    if result.error is not None:
        raise RuntimeError(f"training on Ray failed: {result.error}") from result.error
    return load_run(out)

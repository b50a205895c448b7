"""The quickstart: the whole product on this machine, through the service's own code paths, in-process.

A fresh local store (SQLite + artefact directory under ``<out>/service``) and an in-process job
runner; then, as a user would over REST, three jobs are queued with the service functions the
API routes call and run to their end:

1. ``train_supernet``: the 32 px preset on the bundled demo digits (sandwich rule);
2. ``build_latency_table``: this machine's ``cpu-ort`` per-layer table, scored end to end;
3. ``search``: an accuracy predictor fitted on real subnet evaluations, NSGA-II over accuracy
   and ``latency:cpu-ort``, every front member validated (test top-1, measured latency) and
   exported as a bundle.

The front is read back from SQL, the most accurate member's bundle is written to
``<out>/best_subnet``, the front is drawn to ``<out>/pareto.png`` and written, with the
predictors' quality and the time of each phase, to ``<out>/front.json``.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from predictors.jsonfile import write_json
from store.settings import Settings

SPACE = "ofa_mbv3_d234_e346_k357_demo"
TARGET = "cpu-ort"
LATENCY = f"latency:{TARGET}"
EventCallback = Callable[[str, dict[str, Any]], None]


class QuickstartError(RuntimeError):
    """A quickstart job ended without success; the message carries the job's error."""


@dataclass
class QuickstartResult:
    """What the quickstart produced.

    Attributes:
        front: the validated Pareto front, one dict per subnet (``subnet_id``, ``arch_key``, ``arch``,
            ``predicted``, ``validated``), by increasing latency.
        best_bundle: the most accurate front member's bundle directory.
        plot: the Pareto plot (PNG).
        home: the local service state (database, artefacts, run dirs) for `hwnas serve --home`.
        table_quality: how well the latency table predicted end-to-end measurements.
        predictor: the accuracy predictor's held-out score.
        agreement: how the validated front behaves (`front_agreement`).
        phases: seconds spent per phase, in order (the search job's stages under ``search: <stage>``).
        drift: per measured target, how a reference subnet's latency moved across the front's
            measurements (`predictors.latency.drift`: ``flagged``, ``remeasured``, the change).
    """

    front: list[dict[str, Any]]
    best_bundle: Path
    plot: Path
    home: Path
    table_quality: dict[str, Any] | None
    predictor: dict[str, Any] | None
    agreement: dict[str, float | int | None]
    phases: dict[str, float]
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)


def front_agreement(front: list[dict[str, Any]], accuracy: str = "accuracy", latency: str = LATENCY) -> dict[str, Any]:
    """What a user judges a front by: does validated accuracy rise with measured latency, and was it predicted?

    Returns:
        ``n`` (members with both values), ``spearman_rho`` of validated accuracy against validated
        latency (None below 3 members or with a constant column), ``mean_abs_error`` of predicted
        against validated accuracy, and ``best_accuracy`` (the highest validated accuracy).
    """
    from scipy.stats import spearmanr

    rows = [p for p in front if accuracy in p["validated"] and latency in p["validated"]]
    acc = [float(p["validated"][accuracy]) for p in rows]
    lat = [float(p["validated"][latency]) for p in rows]
    rho = float(spearmanr(lat, acc).statistic) if len(rows) >= 3 and len(set(acc)) > 1 else None
    errors = [abs(float(p["predicted"][accuracy]) - float(p["validated"][accuracy])) for p in rows]
    return {
        "n": len(rows),
        "spearman_rho": rho,
        "mean_abs_error": sum(errors) / len(errors) if errors else None,
        "best_accuracy": max(acc) if acc else None,
    }


def _run_job(runner: Any, queue: Any, job_id: int, on_event: EventCallback) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the queued job `job_id` in a thread, forwarding its progress events.

    Returns:
        The job's result, and the seconds from each progress stage's first event to the next one's
        (the last to the job's end).
    """
    from store.models import JobStatus

    done = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            runner.run_once()
        except BaseException as error:  # surfaced in the calling thread
            errors.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=work, name=f"quickstart-job-{job_id}", daemon=True)
    thread.start()
    seen = 0
    started: dict[str, float] = {}
    while True:
        finished = done.wait(0.25)
        for event in queue.events(job_id, after=seen):
            seen = event.seq
            if event.type == "progress":
                stage = str(event.data.get("stage", "train"))
                started.setdefault(stage, time.monotonic())
                on_event(stage, dict(event.data))
        if finished:
            break
    thread.join()
    if errors:
        raise errors[0]
    job = queue.get(job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise QuickstartError(f"{job.kind} job {job_id} ended {job.status}: {job.error_code}: {job.error_message}")
    ends = [*list(started.values())[1:], time.monotonic()]
    stages = {stage: end - start for (stage, start), end in zip(started.items(), ends, strict=True)}
    return dict(job.result or {}), stages


def run_quickstart(
    out: Path,
    *,
    epochs: int = 40,
    budget: int = 2000,
    seed: int = 0,
    on_event: EventCallback | None = None,
) -> QuickstartResult:
    """Train, measure, search, validate and export, as described in the module docstring.

    Args:
        out: output directory (created); the service state goes to ``out/service``.
        epochs: supernet training epochs.
        budget: search evaluations (on the predictors).
        seed: seed of training, sampling and search.
        on_event: called with (stage, data) for every progress event of the jobs.

    Raises:
        QuickstartError: a job failed (its error is in the message).
    """
    from api.auth import create_user, get_user
    from api.context import ServiceContext
    from api.schemas.searches import SearchCreate
    from api.services import jobs, searches
    from store.artifacts import LocalArtifactStore
    from store.db import Database, upgrade
    from store.models import Subnet
    from store.queue import JobQueue
    from workers.executors import InProcessExecutor
    from workers.kinds import validate_params
    from workers.runner import Runner

    emit = on_event or (lambda _stage, _data: None)
    out = Path(out)
    settings = Settings.local(out / "service")
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url)
    db = Database(settings.db_url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    queue = JobQueue(db)
    ctx = ServiceContext(settings, db, LocalArtifactStore(settings.artifacts_path), queue)
    runner = Runner(queue, ctx.store, settings.runs_path, executor=InProcessExecutor(), lease_s=settings.lease_s)
    try:
        user = get_user(db, "quickstart")
    except KeyError:
        user = create_user(db, "quickstart")

    # a fifth of the training images for validation: the accuracy predictor learns from them, and with
    # 10% (144 images) their sampling noise alone was larger than the differences between subnets
    config = {"space": SPACE, "dataset": "demo", "strategy": "sandwich", "epochs": epochs,
              "val_fraction": 0.2, "seed": seed}  # fmt: skip
    train_params = validate_params("train_supernet", {"name": "quickstart", "config": config})
    phases: dict[str, float] = {}
    start = time.monotonic()
    train_job, _ = jobs.submit(ctx, user, "train_supernet", train_params, None)
    supernet_id = int(_run_job(runner, queue, train_job.id, emit)[0]["supernet_id"])
    phases["train the supernet"] = time.monotonic() - start

    start = time.monotonic()
    table_params = validate_params("build_latency_table", {"target": TARGET, "space": SPACE, "samples": 20})
    table_job, _ = jobs.submit(ctx, user, "build_latency_table", table_params, None)
    table_quality = _run_job(runner, queue, table_job.id, emit)[0].get("quality")
    phases["measure the latency table"] = time.monotonic() - start

    start = time.monotonic()
    request = SearchCreate(supernet_id=supernet_id, objectives=["accuracy", LATENCY], targets=[TARGET],
                           algorithm="nsga2", budget=budget, seed=seed)  # fmt: skip
    search, search_job, _ = searches.create_search(ctx, user, request, None)
    search_result, stages = _run_job(runner, queue, search_job.id, emit)
    phases["search"] = time.monotonic() - start
    phases.update({f"search: {stage}": seconds for stage, seconds in stages.items()})

    with db.reader() as s:
        rows = s.scalars(select(Subnet).where(Subnet.search_id == search.id, Subnet.pareto_rank == 0)).all()
        front: list[dict[str, Any]] = [
            {"subnet_id": r.id, "arch_key": r.arch_key, "arch": r.arch, "predicted": r.predicted or {},
             "validated": r.validated or {}, "bundle": r.bundle_artifact_id}
            for r in rows
        ]  # fmt: skip
    front.sort(key=lambda p: _value(p, LATENCY))
    best = max(front, key=lambda p: _value(p, "accuracy"))
    best_bundle = _write_bundle(ctx, best["bundle"], out / "best_subnet")
    plot = _plot(front, out / "pareto.png", best["arch_key"])
    for point in front:
        del point["bundle"]
    result = QuickstartResult(front, best_bundle, plot, settings.home_dir, table_quality,
                              search_result.get("predictor"), front_agreement(front), phases,
                              search_result.get("drift") or {})  # fmt: skip
    doc = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
    write_json(out / "front.json", {**doc, "best": best["arch_key"]}, indent=1)
    return result


def _value(point: dict[str, Any], name: str) -> float:
    """A front point's validated value of an objective, else its predicted one."""
    return float(point["validated"].get(name, point["predicted"][name]))


def _write_bundle(ctx: Any, artifact_id: int, directory: Path) -> Path:
    """Unpack the stored (sha256-verified) bundle `artifact_id` into `directory`."""
    import io
    import shutil

    from store.artifacts import read_artifact
    from store.models import Artifact

    with ctx.db.reader() as s:
        artifact = s.get(Artifact, artifact_id)
        data = read_artifact(ctx.store, artifact)
    shutil.rmtree(directory, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(directory)
    return directory


def _plot(front: list[dict[str, Any]], path: Path, best: str) -> Path:
    """The front drawn as accuracy against latency, predicted and validated, the exported best marked."""
    from cli.plot import plot_pareto

    title = "hwnas quickstart: Pareto front on cpu-ort (this machine, 1 thread)"
    return plot_pareto(front, LATENCY, "accuracy", path, title=title, highlight=best)

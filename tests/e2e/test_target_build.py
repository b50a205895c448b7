"""``hwnas target build`` and ``hwnas target models`` as a user runs them: the figures shown are the stored models'."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import pytest

from cli import main
from predictors.latency import LookupTable, latency_metrics
from store.artifacts import read_artifact
from store.models import Artifact, LatencyTable
from tests.cli.test_client import Live
from workers.runner import Runner

DEMO = "ofa_mbv3_d234_e346_k357_demo"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def live(live_cli: Live) -> Iterator[Live]:
    """The served app with a worker serving its queue."""
    ctx = live_cli.ctx
    stop = threading.Event()
    runner = Runner(ctx.queue, ctx.store, ctx.settings.runs_path, lease_s=120, poll_s=0.05, progress_interval_s=0)
    worker = threading.Thread(target=runner.serve, kwargs={"stop": stop}, daemon=True)
    worker.start()
    yield live_cli
    stop.set()
    worker.join(timeout=30)


def test_target_build_prints_the_quality_of_the_models_it_stored(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["target", "build", "cpu-ort", "--space", DEMO, "--resolution", "12", "--samples", "10"])
    out = capsys.readouterr().out
    assert code == 0, out
    table_line = next(line for line in out.splitlines() if line.startswith("lookup table"))
    learned_line = next(line for line in out.splitlines() if line.startswith("learned predictor"))
    assert "on 10 end-to-end samples" in table_line and "on 10 end-to-end samples" in learned_line
    with live.ctx.db.reader() as s:
        rows = {row.kind: row for row in s.query(LatencyTable)}
        artifact = s.get(Artifact, rows["lut"].artifact_id)
        assert artifact is not None
        table_file = read_artifact(live.ctx.store, artifact)
    job = json.loads(main_json(capsys, "status", str(rows["lut"].job_id), "--json"))
    samples = job["result"]["samples"]
    table = LookupTable.from_dict(json.loads(table_file))
    shown = latency_metrics(table.predict([s["arch"] for s in samples]), [s["ms"] for s in samples])
    assert f"MAPE {shown.mape:.1f}%" in table_line  # the stored table, scored again, gives the printed figure
    assert f"within ±10% {100 * shown.within_10:.0f}%" in table_line
    assert re.search(rf"MAPE {rows['learned'].quality['mape']:.1f}%", learned_line)  # type: ignore[index]

    code = main(["target", "models", "cpu-ort"])
    listed = capsys.readouterr().out.splitlines()
    lut, learned = rows["lut"].id, rows["learned"].id
    assert code == 0 and listed[0].startswith(f"model {lut} (lut, {DEMO}): ")
    assert listed[1].startswith(f"model {learned} (learned, {DEMO}, used by searches): ")
    assert table_line.split(": ", 1)[1] in listed[0]


def test_target_build_of_an_unknown_target_is_one_error_line(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["target", "build", "nope", "--space", DEMO]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "not found" in err
    assert main(["target", "models", "cpu-ort"]) == 0
    assert "no latency models" in capsys.readouterr().out


def main_json(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What ``hwnas <args>`` printed (it must succeed)."""
    assert main(list(args)) == 0
    return capsys.readouterr().out

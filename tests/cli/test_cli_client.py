"""The client commands of ``hwnas`` (submit, status, watch, pareto, download, cancel) against a live server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli import main
from cli.client import Client
from store.models import Supernet
from tests.cli.test_client import Live, add_search_with_front, live_server

SPACE = "ofa_mbv3_d234_e346_k357_32px"


@pytest.fixture
def live(live_cli: Live) -> Live:
    return live_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_status_pareto_download_cancel(live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    search_id, ids = add_search_with_front(live, live.users.a_id)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"supernet_id": 1, "objectives": ["accuracy"], "budget": 5}))
    code, out, _ = run(capsys, "submit", "search", "--file", str(body), "-o", "accuracy", "-o", "macs",
                       "--constraint", "macs=:5e6", "--budget", "7")  # fmt: skip
    assert code == 0 and "queued search 2" in out
    code, out, _ = run(capsys, "status", "search:2", "--json")
    record = json.loads(out)
    assert record["budget"] == 7 and record["objectives"] == ["accuracy", "macs"]
    assert record["constraints"] == {"macs": [None, 5e6]}
    code, out, _ = run(capsys, "status", str(record["job_id"]))
    assert code == 0 and "QUEUED" in out and "search" in out
    code, out, _ = run(capsys, "pareto", str(search_id), "--plot", str(tmp_path / "front.png"))
    assert code == 0 and "k0" in out and "k2" in out and (tmp_path / "front.png").stat().st_size > 1000
    code, out, _ = run(capsys, "pareto", str(search_id), "--format", "csv")
    assert out.splitlines()[0].startswith("subnet_id,") and len(out.splitlines()) == 4
    code, out, _ = run(capsys, "download", str(ids[0]), "--format", "safetensors", "-o", str(tmp_path / "w.st"))
    assert code == 0 and (tmp_path / "w.st").read_bytes() == b"weights bytes" and "sha256" in out
    code, out, _ = run(capsys, "cancel", str(search_id))
    assert code == 0 and "CANCELLED" in out


def test_pareto_of_an_empty_front_is_one_line_with_the_reason(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search_id, _ = add_search_with_front(live, live.users.a_id, points=0)
    code, out, _ = run(capsys, "pareto", str(search_id))
    assert code == 0 and out.splitlines() == [f"search {search_id}: empty Pareto front (the search is QUEUED)"]
    lease = live.ctx.queue.claim("test", 30)
    assert lease is not None
    reason = "no subnet met macs <= 1e+05: the smallest value seen was 2.1e+06 after 10 evaluations"
    live.ctx.queue.complete(lease, {"reason": reason, "members": []})
    code, out, err = run(capsys, "pareto", str(search_id), "--plot", str(tmp_path / "front.png"))
    assert (code, err) == (0, "") and not (tmp_path / "front.png").exists()
    assert out.splitlines() == [f"search {search_id}: empty Pareto front ({reason}); no plot written"]
    code, out, err = run(capsys, "pareto", str(search_id), "--format", "csv", "--plot", str(tmp_path / "front.png"))
    assert code == 0 and out.splitlines()[0].startswith("subnet_id,") and len(out.splitlines()) == 1
    assert err.splitlines() == [f"search {search_id}: empty Pareto front ({reason}); no plot written"]


def test_watch_prints_a_line_per_event_and_a_short_summary(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    queue = live.ctx.queue
    done, _ = queue.submit("noop", {"steps": 3}, user_id=live.users.a_id)
    lease = queue.claim("test", 30)
    assert lease is not None
    for step in range(3):
        queue.progress(lease, {"step": step + 1, "steps": 3, "loss": 0.5})
    queue.log(lease, "all steps done")
    reason = "the front is fine; " + "a long explanation that a terminal would wrap " * 6
    result = {"n_evaluations": 100, "hypervolume": 0.432154, "members": [{"arch": {}}] * 2, "reason": reason,
              "predictor": {"samples": 100}, "search_id": 5, "subnet_ids": [7, 8]}  # fmt: skip
    queue.complete(lease, result)
    code, out, _ = run(capsys, "watch", str(done.id))
    lines = out.splitlines()
    assert code == 0 and "all steps done" in lines
    assert [line.split("[")[0].split() for line in lines if line.startswith("progress")] == [
        ["progress", f"{n}/3", f"({pct}%)", "loss=0.5"] for n, pct in ((1, 33), (2, 67), (3, 100))
    ]
    assert re.fullmatch(rf"job {done.id} \(noop\) SUCCEEDED in [0-9.]+s", lines[-4])
    assert lines[-3:] == ["  search 5; subnets 7, 8", "  n_evaluations 100; hypervolume 0.4322; members 2",
                          f"  reason: {reason}"]  # fmt: skip
    code, out, err = run(capsys, "watch", str(done.id), "--json")
    assert code == 0 and json.loads(out)["result"] == result and "all steps done" in err


def test_watch_off_a_terminal_prints_a_line_per_epoch(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    queue = live.ctx.queue
    job, _ = queue.submit("noop", {}, user_id=live.users.a_id)
    lease = queue.claim("test", 30)
    assert lease is not None
    for epoch in range(2):  # as the train job reports nas.train's events
        for step in range(4):
            queue.progress(lease, {"phase": "sandwich", "phase_index": 0, "phases": 1, "epoch": epoch, "epochs": 2,
                                   "step": step, "steps": 4, "loss": 2.0 - epoch - step / 10, "images_per_s": 50.0,
                                   "eta_s": 3.0})  # fmt: skip
    queue.complete(lease, {"supernet_id": 3, "epochs": 2})
    code, out, _ = run(capsys, "watch", str(job.id))
    lines = [line.split("[")[0].split() for line in out.splitlines() if line.startswith("sandwich")]
    assert code == 0 and lines == [
        ["sandwich", "epoch", "1/2", "step", "1/4", "loss=2", "images_per_s=50"],
        ["sandwich", "epoch", "1/2", "step", "4/4", "loss=1.7", "images_per_s=50"],
        ["sandwich", "epoch", "2/2", "step", "4/4", "loss=0.7", "images_per_s=50"],
    ]
    assert out.splitlines()[-2:] == ["  supernet 3", "  epochs 2"]


def test_watch_exits_1_when_the_job_failed(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    queue = live.ctx.queue
    failed, _ = queue.submit("noop", {"steps": 1}, user_id=live.users.a_id)
    lease = queue.claim("test", 30)
    assert lease is not None
    queue.fail(lease, "boom", "it broke")
    code, _, err = run(capsys, "watch", str(failed.id))
    assert code == 1 and err.strip().splitlines() == [f"error: job {failed.id} FAILED: boom: it broke"]


def test_ls_lists_supernets_searches_and_jobs_newest_first(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    search_id, _ = add_search_with_front(live, live.users.a_id)
    queue = live.ctx.queue
    done, _ = queue.submit("noop", {}, user_id=live.users.a_id)
    lease = queue.claim("test", 30, kinds=["noop"])
    assert lease is not None
    queue.complete(lease, {"search_id": 9, "subnet_ids": [4, 5]})
    search_job = live.ctx.queue.get(done.id - 1)
    code, out, _ = run(capsys, "ls", "jobs")
    rows = [line.split() for line in out.splitlines()]
    assert code == 0 and rows[0] == ["id", "kind", "status", "attempts", "created", "took", "result"]
    assert rows[1][:4] == [str(done.id), "noop", "SUCCEEDED", "1/3"] and rows[1][-5:] == ["search", "9;", "subnets",
                                                                                           "4,", "5"]  # fmt: skip
    assert rows[2][:4] == [str(search_job.id), "search", "QUEUED", "0/3"] and rows[2][-2:] == ["-", "-"]
    assert len(rows) == 3
    assert [r[0] for r in (line.split() for line in run(capsys, "ls", "jobs", "--kind", "search")[1].splitlines())] == [
        "id", str(search_job.id)]  # fmt: skip
    assert run(capsys, "ls", "jobs", "--status", "succeeded")[1].splitlines()[1].split()[0] == str(done.id)
    code, out, err = run(capsys, "ls", "jobs", "--limit", "1")
    token = err.split("--page-token ")[1].strip()
    assert len(out.splitlines()) == 2 and err.startswith("more: hwnas ls jobs --limit 1 --page-token ")
    code, out, err = run(capsys, "ls", "jobs", "--limit", "1", "--page-token", token)
    assert out.splitlines()[1].split()[0] == str(search_job.id) and err == ""
    code, out, _ = run(capsys, "ls", "searches")
    header, row = out.splitlines()
    assert header.split()[:5] == ["id", "supernet", "status", "algorithm", "objectives"]
    assert row.split()[:5] == [str(search_id), "1", "QUEUED", "evolution", "accuracy,macs"]
    code, out, _ = run(capsys, "ls", "supernets")
    assert [line.split()[:5] for line in out.splitlines()] == [
        ["id", "name", "space", "dataset", "strategy"], ["1", "-", SPACE, "demo", "sandwich"]]  # fmt: skip
    assert json.loads(run(capsys, "ls", "searches", "--json")[1])["items"][0]["id"] == search_id
    with Client(live.url, live.token("b")) as other:
        assert other.list("jobs")["items"] == []
    code, out, _ = run(capsys, "ls", "jobs", "--token", live.token("b"))
    assert (code, out) == (0, "no jobs\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "search:99"], "404 not_found: search 99 not found"),
        (["status", "thing:1"], "expected JOB_ID"),
        (["submit", "search", "--supernet", "1", "-o", "accuracy", "--budget", "0"], "422 validation_error: budget: "),
        (["submit", "search", "--supernet", "1", "--constraint", "macs"], "--constraint: expected NAME=VALUE"),
        (["submit", "supernet", "--space", SPACE, "--dataset", "demo", "--device", "cuda"], "409 no_gpu: device=cuda"),
        (["submit", "supernet", "--space", SPACE, "--workers", "0"], "422 validation_error: workers: "),
        (["pareto", "1", "--format", "xml"], "--format"),
        (["download", "1", "--server", "http://127.0.0.1:9"], "cannot reach the hwnas server"),
        (["watch", "1", "--token", "wrong"], "401 unauthorized"),
        (["ls", "things"], "RESOURCE: expected supernets, searches, jobs, datasets, got 'things'"),
        (["ls", "searches", "--kind", "search"], "--kind and --status filter jobs only"),
        (["ls", "jobs", "--kind", "serach"], "422 validation_error: kind: unknown job kind 'serach'; registered: "),
        (["ls", "jobs", "--status", "done"], "422 validation_error: status: "),
        (["ls", "jobs", "--limit", "0"], "--limit"),
    ],
)
def test_client_errors_are_one_line_and_exit_1(
    live: Live, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with live.ctx.db.session() as s:
        s.add(Supernet(user_id=live.users.a_id, space=SPACE, dataset="demo", strategy="sandwich", config={}))
    code, _, err = run(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_a_command_waits_for_a_server_that_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_server(tmp_path, start_after_s=1.0) as late:
        monkeypatch.setenv("HWNAS_SERVER", late.url)
        monkeypatch.setenv("HWNAS_TOKEN", late.token())
        assert run(capsys, "ls", "jobs") == (0, "no jobs\n", "")


def test_missing_server_or_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HWNAS_SERVER", raising=False)
    monkeypatch.delenv("HWNAS_TOKEN", raising=False)
    assert run(capsys, "status", "1")[2].strip() == "error: no server: pass --server URL or set HWNAS_SERVER"
    assert "no API token" in run(capsys, "status", "1", "--server", "http://x")[2]

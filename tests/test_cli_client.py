"""The client commands of ``hwnas`` (submit, status, watch, pareto, download, cancel) against a live server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_client import Live, add_search_with_front, live_server

from api.cli import main
from api.db.models import Supernet

SPACE = "ofa_mbv3_d234_e346_k357_32px"


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    with live_server(tmp_path / "home") as served:
        monkeypatch.setenv("HWNAS_SERVER", served.url)
        monkeypatch.setenv("HWNAS_TOKEN", served.token())
        monkeypatch.setenv("COLUMNS", "200")
        yield served


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


def test_watch_follows_a_job_and_exits_1_when_it_failed(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    queue = live.ctx.queue
    done, _ = queue.submit("noop", {"steps": 3}, user_id=live.users.a_id)
    lease = queue.claim("test", 30)
    assert lease is not None
    for step in range(3):
        queue.progress(lease, {"step": step + 1, "steps": 3, "loss": 0.5})
    queue.log(lease, "all steps done")
    queue.complete(lease, {"answer": 42})
    code, out, _ = run(capsys, "watch", str(done.id))
    assert code == 0 and "all steps done" in out and "SUCCEEDED" in out and "42" in out
    failed, _ = queue.submit("noop", {"steps": 1}, user_id=live.users.a_id)
    lease = queue.claim("test", 30)
    assert lease is not None
    queue.fail(lease, "boom", "it broke")
    code, _, err = run(capsys, "watch", str(failed.id))
    assert code == 1 and err.strip().splitlines() == [f"error: job {failed.id} FAILED: boom: it broke"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "search:99"], "404 not_found: search 99 not found"),
        (["status", "thing:1"], "expected JOB_ID"),
        (["submit", "search", "--supernet", "1", "-o", "accuracy", "--budget", "0"], "422 validation_error: budget: "),
        (["submit", "search", "--supernet", "1", "--constraint", "macs"], "--constraint: expected NAME=VALUE"),
        (["pareto", "1", "--format", "xml"], "--format"),
        (["download", "1", "--server", "http://127.0.0.1:9"], "cannot reach the hwnas server"),
        (["watch", "1", "--token", "wrong"], "401 unauthorized"),
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


def test_missing_server_or_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HWNAS_SERVER", raising=False)
    monkeypatch.delenv("HWNAS_TOKEN", raising=False)
    assert run(capsys, "status", "1")[2].strip() == "error: no server: pass --server URL or set HWNAS_SERVER"
    assert "no API token" in run(capsys, "status", "1", "--server", "http://x")[2]

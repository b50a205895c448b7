"""The hwnas command line (local commands), run in-process through `main` and once through ``python -m cli``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cli import main
from nas.bundle_eval import score_bundle
from nas.data import load_dataset
from nas.export import load_bundle
from nas.spaces import list_spaces
from nas.supernet import build_supernet
from nas.train import BNCalibration, calibrated_subnet


@pytest.mark.slow
def test_quickstart_exports_loadable_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart", "--out", str(tmp_path), "--epochs", "1", "--budget", "200"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "best subnet's bundle" in out
    assert "accuracy predictor (gbm): Kendall tau" in out and "latency table (cpu-ort)" in out and "time: train" in out
    assert "web view of this front: after `hwnas serve --home" in out and "http://127.0.0.1:8000/ui/" in out
    best = load_bundle(tmp_path / "best_subnet")
    assert best.meta["space"] == "ofa_mbv3_d234_e346_k357_demo"
    assert (tmp_path / "pareto.png").stat().st_size > 0
    doc = json.loads((tmp_path / "front.json").read_text())
    shown = next(p for p in doc["front"] if p["arch_key"] == doc["best"])["validated"]["accuracy"]
    data = load_dataset("demo")
    assert score_bundle(tmp_path / "best_subnet", data.test_images, data.test_labels).top1 == shown


def test_export_from_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "ckpt.safetensors"))
    arch = net.space.sample(1)
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    code = main(
        [
            "export",
            "--space", "ofa_mbv3_d234_e346_k357_32px",
            "--checkpoint", str(tmp_path / "ckpt.safetensors"),
            "--arch", f"@{tmp_path / 'arch.json'}",
            "--out", str(tmp_path / "bundle"),
            "--mean", "0.5", "--std", "0.25", "--no-calibration",
        ]
    )  # fmt: skip
    assert code == 0
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.meta["input"]["mean"] == [0.5] and bundle.meta["bn_calibration"] is None
    x = torch.randn(2, 1, arch["r"], arch["r"])
    with torch.no_grad():
        torch.testing.assert_close(bundle.module(x), net.extract(arch).eval()(x), rtol=0, atol=0)

    common = ["export", "--space", "ofa_mbv3_d234_e346_k357_32px", "--checkpoint", str(tmp_path / "ckpt.safetensors"),
              "--arch", f"@{tmp_path / 'arch.json'}"]  # fmt: skip
    calibrate = ["--calibration-dataset", "demo", "--calibration-images", "64"]
    assert main([*common, "--out", str(tmp_path / "calibrated"), *calibrate]) == 0
    calibrated = load_bundle(tmp_path / "calibrated")
    assert calibrated.meta["bn_calibration"]["dataset"] == "demo" and calibrated.meta["bn_calibration"]["images"] == 64
    calibration = BNCalibration.of_dataset("demo", images=64)
    x = calibration.inputs(arch["r"])
    with torch.no_grad():
        torch.testing.assert_close(calibrated.module(x), calibrated_subnet(net, arch, calibration)(x))


EXPORT = ["export", "--space", "ofa_mbv3_d234_e346_k357_32px"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--space", "nope", "--arch", "max", "--out", "x", "--no-calibration"], "unknown search space"),
        ([*EXPORT, "--arch", "{bad", "--out", "x", "--no-calibration"], "not valid JSON"),
        ([*EXPORT, "--arch", '{"ks": [4]}', "--out", "x", "--no-calibration"], "missing"),
        ([*EXPORT, "--arch", "max", "--out", "x", "--mean", "a"], "--mean"),
        ([*EXPORT, "--arch", "max", "--out", "x"], "--calibration-dataset NAME"),
        ([*EXPORT, "--arch", "max", "--out", "x", "--calibration-dataset", "nope"], "unknown dataset"),
        (["export", "--space", "ofa_mbv3_d234_e346_k357_32px", "--out", "x"], "--arch"),
        (["train", "--out", "x", "--device", "gpu0"], "unknown device 'gpu0'"),
        (["train", "--out", "x", "--device", "cuda:1", "--workers", "2"], "use --device cuda (or cpu) with --workers"),
        (["train", "--out", "x", "--set", "zero_init_residual_bn"], "'zero_init_residual_bn' is not KEY=VALUE"),
        (["train", "--out", "x", "--set", "lr=0.5"], "lr has an option of its own: --lr"),
        (["train", "--out", "x", "--set", "no_such_field=1"], "no_such_field"),
        (
            ["train", "--out", "x", "--strategy", "progressive_shrinking", "--set", "largest_at_top_resolution=true"],
            "largest_at_top_resolution is a sandwich option",
        ),
        (["nope"], "No such command"),
    ],
)
def test_user_errors_exit_1_with_one_line(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a if a != "x" else str(tmp_path / "x") for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].startswith("error:") and message in err.splitlines()[-1]
    assert not (tmp_path / "x").exists()


def test_train_takes_any_config_field_with_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = [
        "train_images=64", "num_random=1", "bn_recal_images=64", "epoch_validation=false",
        "zero_init_residual_bn=true", "largest_at_top_resolution=true", "distilled_label_weight=0.5",
    ]  # fmt: skip
    args = ["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "32"]
    assert main([*args, *(item for s in settings for item in ("--set", s))]) == 0
    assert "trained 1 epochs" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["config"]
    assert {k: saved[k] for k in ("train_images", "zero_init_residual_bn", "largest_at_top_resolution")} == {
        "train_images": 64, "zero_init_residual_bn": True, "largest_at_top_resolution": True
    }  # fmt: skip
    assert saved["distilled_label_weight"] == 0.5 and saved["epoch_validation"] is False


def test_console_entry_point_lists_spaces() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "spaces"], capture_output=True, text=True, check=True, timeout=120
    )
    for name in list_spaces():
        assert name in result.stdout


def test_training_progress_off_a_terminal_is_a_line_per_epoch_of_each_phase() -> None:
    from rich.console import Console

    from cli.progress import TrainingProgress
    from nas.train import ProgressEvent

    out = io.StringIO()  # not a terminal: a file or a pipe
    with TrainingProgress(Console(file=out)) as progress:
        for index, phase in enumerate(["full", "kernel"]):
            for epoch in range(2):
                for step in range(3):
                    progress(ProgressEvent(phase, index, 2, epoch, 2, step, 3, 1.5 - epoch / 2, 120.0, 9.0))
    lines = [line.split("[")[0].split() for line in out.getvalue().splitlines()]
    assert lines == [
        [phase, f"({i}/2)", "epoch", f"{epoch}/2", "step", f"{step}/3", f"loss={loss}", "images_per_s=120"]
        for phase, i in (("full", 1), ("kernel", 2))
        for epoch, step, loss in ((1, 1, 1.5), (1, 3, 1.5), (2, 3, 1))
    ]


def test_admin_creates_users_and_tokens_and_first_start_creates_one_admin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.auth import authenticate, ensure_first_user
    from store.db import Database
    from store.migrate import upgrade
    from store.settings import Settings

    home = tmp_path / "home"
    assert main(["admin", "create-user", "erin", "--token", "--home", str(home)]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1].strip()
    assert main(["admin", "create-token", "erin", "--label", "ci", "--home", str(home)]) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1].strip()
    db = Database(Settings(home=home).db_url)
    users = [authenticate(db, token) for token in (first, second)]
    assert first != second and [u.name if u else None for u in users] == ["erin", "erin"]
    assert ensure_first_user(db) is None  # the store has a user: nothing is created
    db.dispose()

    url = Settings(home=tmp_path / "fresh").db_url
    upgrade(url)
    fresh = Database(url)
    token = ensure_first_user(fresh)
    admin = authenticate(fresh, token) if token else None
    assert admin is not None and admin.name == "admin" and admin.is_admin
    assert ensure_first_user(fresh) is None  # shown once: a second start creates nothing
    fresh.dispose()


def test_admin_without_home_does_not_start_a_store_in_the_default_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.hwnas is tmp_path/.hwnas
    monkeypatch.delenv("HWNAS_HOME", raising=False)
    monkeypatch.delenv("HWNAS_DATABASE_URL", raising=False)
    for args in (["admin", "create-token", "quickstart"], ["admin", "create-user", "erin"]):
        assert main(args) == 1
        assert capsys.readouterr().err.splitlines() == [
            "error: no hwnas store in ~/.hwnas: pass --home DIR (after a quickstart: --home hwnas-out/service) or "
            "set HWNAS_HOME; to start a new store there: hwnas admin create-user NAME --create"
        ]
        assert not (tmp_path / ".hwnas").exists()
    assert main(["admin", "create-user", "erin", "--create"]) == 0 and (tmp_path / ".hwnas" / "hwnas.db").exists()
    assert main(["admin", "create-token", "erin"]) == 0  # the default store exists now
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path / "named"))  # a store the user names is made as before
    assert main(["admin", "create-user", "fred"]) == 0 and (tmp_path / "named" / "hwnas.db").exists()


def test_serve_after_a_quickstart_says_how_to_get_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from api.auth import authenticate
    from store.db import Database
    from store.settings import Settings

    home = tmp_path / "a folder name a terminal would wrap somewhere" / ("deep" * 10) / "hwnas-out" / "service"
    assert main(["admin", "create-user", "quickstart", "--home", str(home)]) == 0  # what the quickstart leaves
    capsys.readouterr()
    command = [sys.executable, "-m", "cli", "serve", "--home", str(home), "--port", "0", "--no-worker"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert server.stdout is not None
        lines: list[str] = []
        while not lines or not lines[-1].startswith("hwnas API on"):
            line = server.stdout.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line.rstrip("\n"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    hint = f"hwnas admin create-token quickstart --home {shlex.quote(str(home))}"
    assert lines[-2] == f"no API token? create one: {hint} (users: quickstart)"  # one line, however long
    assert main(shlex.split(hint)[1:]) == 0
    token = capsys.readouterr().out.strip()
    db = Database(Settings(home=home).db_url)
    user = authenticate(db, token)
    assert user is not None and user.name == "quickstart"
    db.dispose()

"""The device's install: ``pip install hwnas`` (the wheel, base dependencies only) is the agent and nothing heavier.

Builds the wheel from this checkout, installs it into a fresh virtualenv from pip's configured index, and runs that
virtualenv's ``hwnas-agent`` against a live service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx

from store.models import AgentTask
from tests.cli.test_client import live_server
from tests.workers.test_agent import queue_task

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "nas", "predictors", "store", "workers", "api", "cli"]
HEAVY = {"torch", "ray", "fastapi", "sqlalchemy", "lightgbm", "scikit-learn", "pydantic", "onnx", "typer", "pyyaml"}


def build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of this checkout (setuptools builds in the source tree: the copy keeps this one clean)."""
    source = tmp / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp / "dist"), str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("hwnas-*.whl")
    return wheel


def test_the_wheel_installs_a_light_agent_that_measures_for_a_live_service(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "device"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    pip = bin_dir / "pip"
    install = subprocess.run([pip, "install", "--quiet", wheel], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([pip, "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"hwnas", "numpy", "onnxruntime", "httpx"} <= installed and not installed & HEAVY, sorted(installed)

    with live_server(tmp_path / "home") as live:
        task_id = queue_task(live.ctx, live.users, create_target=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed hwnas, not this checkout
        env |= {"HWNAS_SERVER": live.url, "HWNAS_TOKEN": live.token()}
        command = [str(bin_dir / "hwnas-agent"), "--target", "board-ort", "--name", "board", "--max-tasks", "1",
                   "--poll", "0.1", "--idle-exit", "60"]  # fmt: skip
        agent = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert agent.returncode == 0, agent.stderr
        with live.ctx.db.reader() as s:
            row = s.get(AgentTask, task_id)
            assert row is not None and row.status == "DONE" and row.result is not None
            assert row.result["median_ms"] > 0 and row.result["agent"] == "board"
        agents = httpx.get(f"{live.url}/v1/agents", headers=live.users.a).json()["items"]
    version = subprocess.run(
        [bin_dir / "python", "-c", "import onnxruntime as o; print(o.__version__, *o.get_available_providers())"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    cli = subprocess.run([bin_dir / "hwnas", "--help"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 1 and "pip install 'hwnas[service]'" in cli.stderr and "hwnas-agent" in cli.stderr
    (facts,) = [a["environment"] for a in agents]
    assert [facts["runtime_version"], *facts["providers"]] == version
    assert {"cpu_model", "logical_cores", "machine", "cpu_governor"} <= facts.keys()

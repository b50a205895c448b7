"""docker-compose.yml and the Dockerfile, without a Docker engine: the Compose schema, and that what they name exists.

`tests/data/compose-spec.json` is the Compose Specification's JSON schema as shipped in the
``docker-compose`` 1.29.2 wheel (``compose/config/compose_spec.json``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from cli import app
from store.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
IMAGE = "hwnas:latest"


def words(service: dict[str, Any]) -> list[str]:
    """The service's command as words (a ``sh -c`` script split into its words, ``&&`` dropped)."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        argv = shlex.split(argv[2])
    return [w for w in argv if w not in ("&&", "exec")]


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    # the schema is strict: an unknown key is an error
    assert list(validator.iter_errors({"services": {"api": {"image": "x", "comand": "typo"}}}))


def test_services_and_images() -> None:
    assert set(SERVICES) == {"postgres", "ray-head", "ray-worker", "api", "worker"}
    assert SERVICES["postgres"]["image"].startswith("postgres:") and "pg_isready" in str(
        SERVICES["postgres"]["healthcheck"]["test"]
    )
    built = [name for name, s in SERVICES.items() if "build" in s]
    assert built == ["ray-head"] and SERVICES["ray-head"]["build"] == "."
    for name, service in SERVICES.items():
        assert service["image"] == IMAGE or name == "postgres"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency}'s health check"


def test_ray_nodes_and_target_resource() -> None:
    head = words(SERVICES["ray-head"])
    assert head[:3] == ["ray", "start", "--head"] and "--port=6379" in head
    worker = words(SERVICES["ray-worker"])
    resources = next(w for w in worker if w.startswith("--resources=")).removeprefix("--resources=")
    assert json.loads(resources) == {"target:cpu-ort": 1}
    assert "--address=ray-head:6379" in worker and "--address=ray-head:6379" in words(SERVICES["worker"])


def test_commands_name_real_modules_and_hwnas_commands(tmp_path: Path) -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    api = words(SERVICES["api"])
    module = api[api.index("-m") + 1]
    assert module == "store.migrate" and api[api.index("-m") + 2] == "upgrade"
    factory = api[api.index("--factory") + 1]
    module_name, _, attr = factory.partition(":")
    create_app = getattr(importlib.import_module(module_name), attr)
    assert all(p.default is not inspect.Parameter.empty for p in inspect.signature(create_app).parameters.values())
    worker = words(SERVICES["worker"])
    assert worker[worker.index("hwnas") + 1] == "worker" and "worker" in commands
    # the API's first step, for real: migrate the database that HWNAS_DATABASE_URL names
    env = {**os.environ, "HWNAS_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}"}
    subprocess.run([sys.executable, "-m", module, "upgrade"], env=env, check=True, timeout=120, cwd=ROOT)
    assert (tmp_path / "db.sqlite").stat().st_size > 0


@pytest.mark.parametrize("service", ["api", "worker", "ray-worker"])
def test_hwnas_variables_are_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: str(v) for k, v in SERVICES[service]["environment"].items()}
    names = {k.removeprefix(ENV_PREFIX).lower() for k in env if k.startswith(ENV_PREFIX)}
    assert names <= set(Settings.model_fields) and "database_url" in names
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.db_url.startswith("postgresql+psycopg://") and "@postgres:5432/" in settings.db_url


def test_dockerfile_installs_cpu_torch_first_and_copies_what_exists() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    runs = [line for line in lines if line.startswith("RUN ")]
    assert "torch==2.13.0" in runs[0] and "download.pytorch.org/whl/cpu" in runs[0]
    assert any(re.search(r"pip install (-e )?'\.\[service\]'$", r) for r in runs[1:])  # the service extra
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    cmd = json.loads(next(line for line in lines if line.startswith("CMD ")).removeprefix("CMD "))
    assert cmd[0] == "hwnas" and cmd[1] in typer.main.get_command(app).commands  # type: ignore[attr-defined]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"nas", "predictors", "store", "workers", "api", "cli", "pyproject.toml", "README.md"} & set(ignored)

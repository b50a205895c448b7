"""Settings from ``HWNAS_*`` environment variables (pydantic-settings): defaults, overrides, bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from store.settings import ENV_PREFIX, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``HWNAS_<FIELD>`` of the shell that runs the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(ENV_PREFIX + name.upper(), raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.home_dir == Path("~/.hwnas").expanduser()
    assert settings.db_url == f"sqlite:///{Path('~/.hwnas').expanduser() / 'hwnas.db'}"
    assert settings.artifacts_path == settings.home_dir / "artifacts"
    assert settings.runs_path == settings.home_dir / "runs"
    assert (settings.lease_s, settings.poll_s, settings.max_attempts) == (60.0, 2.0, 3)
    assert (settings.sqlite_busy_timeout_ms, settings.gil_switch_interval_ms) == (30_000, 0.5)


def test_environment_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_HOME", str(tmp_path))
    monkeypatch.setenv("HWNAS_LEASE_S", "12.5")
    monkeypatch.setenv("HWNAS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("HWNAS_MNIST_URL", "http://127.0.0.1:9/")  # another part's variable: not a setting
    settings = Settings()
    assert settings.db_url == f"sqlite:///{tmp_path / 'hwnas.db'}"
    assert settings.artifacts_path == tmp_path / "artifacts" and settings.runs_path == tmp_path / "runs"
    assert (settings.lease_s, settings.max_attempts, settings.poll_s) == (12.5, 5, 2.0)
    monkeypatch.setenv("HWNAS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("HWNAS_ARTIFACTS_DIR", str(tmp_path / "elsewhere"))
    settings = Settings()
    assert settings.db_url == "postgresql+psycopg://u@h/db" and settings.artifacts_path == tmp_path / "elsewhere"


def test_arguments_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWNAS_HOME", "/nowhere")
    monkeypatch.setenv("HWNAS_POLL_S", "7")
    settings = Settings(home=tmp_path)
    assert settings.home_dir == tmp_path and settings.poll_s == 7.0


def test_a_local_store_stays_under_its_home_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quickstart's store: a user's HWNAS_DATABASE_URL must not receive its rows."""
    monkeypatch.setenv("HWNAS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("HWNAS_ARTIFACTS_DIR", "/elsewhere/artifacts")
    monkeypatch.setenv("HWNAS_RUNS_DIR", "/elsewhere/runs")
    monkeypatch.setenv("HWNAS_LEASE_S", "12.5")
    settings = Settings.local(tmp_path)
    assert settings.db_url == f"sqlite:///{tmp_path / 'hwnas.db'}"
    assert settings.artifacts_path == tmp_path / "artifacts" and settings.runs_path == tmp_path / "runs"
    assert settings.lease_s == 12.5  # what is not a location still comes from the environment


@pytest.mark.parametrize(("name", "value"), [("LEASE_S", "-1"), ("MAX_ATTEMPTS", "0"), ("POLL_S", "often")])
def test_a_bad_value_names_its_field(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_settings_are_frozen_and_closed() -> None:
    with pytest.raises(ValidationError):
        Settings(lease_s=1).lease_s = 2  # type: ignore[misc]
    with pytest.raises(ValidationError, match="leese_s"):
        Settings(leese_s=1)  # type: ignore[call-arg]

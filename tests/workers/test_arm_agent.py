"""The device agent installed from aarch64 wheels into an arm64 userland and run under qemu-user (bench.arm_agent)."""

from __future__ import annotations

import pytest

from bench.arm_agent import main, pip_conf, unavailable


def test_the_userland_pip_gets_this_hosts_index_but_not_its_local_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.org/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/local/simple https://extra.example.org/simple")
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    conf, cert = pip_conf()
    assert "index-url = https://mirror.example.org/simple\n" in conf
    assert "extra-index-url = https://extra.example.org/simple\n" in conf and "file:" not in conf
    assert cert is not None and str(cert) == "/etc/ssl/certs/ca-certificates.crt"
    assert "cert = /etc/hwnas-host-ca.pem\n" in conf, "the bundle is copied into the userland under this name"


@pytest.mark.slow
def test_the_agent_completes_a_task_on_aarch64() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(f"no arm64 userland here: {reason}")
    figures = main(["--tasks", "1", "--no-record"])  # builds the rootfs in /tmp/hwnas-arm64 on first use
    assert figures["environment"]["machine"] == "aarch64"
    assert figures["environment"]["runtime"] == "onnxruntime" and figures["medians_ms"][0] > 0
    assert {"hwnas", "onnxruntime", "numpy", "httpx"} <= set(figures["versions"])
    assert not {"torch", "fastapi", "sqlalchemy"} & set(figures["versions"]), "the agent's install is the light one"

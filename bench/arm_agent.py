"""The device agent on aarch64: ``pip install hwnas`` into an arm64 Debian userland and run it under qemu-user.

    python -m bench.arm_agent                         # 5 tasks; the rootfs is built once in /tmp/hwnas-arm64
    python -m bench.arm_agent --tasks 1 --no-record   # a quick check

Builds (or reuses) a minimal arm64 Debian userland with python3 (mmdebstrap), builds this checkout's wheel,
installs it with its base dependencies (aarch64 wheels of onnxruntime, numpy, httpx) into a fresh venv there,
serves the API on 127.0.0.1 on a fresh SQLite store, queues ONNX subnets of the demo space for a remote target,
and runs ``hwnas-agent`` in the userland (chroot; the kernel runs its aarch64 binaries with qemu-user) until it
has measured them all. Then it checks on the service that every task is DONE with a measurement and a recorded
`LatencyMeasurement`, and that the agent reported an aarch64 machine. Latencies under emulation mean nothing:
what this shows is that the light install and the agent's protocol work on aarch64.

Needs root (chroot, a mount namespace), the Debian packages mmdebstrap and qemu-user-static with the kernel's
binfmt_misc handler for aarch64 enabled, and the package index this host's pip uses (its index URL and CA bundle
are given to the userland's pip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.agents import Service, queue_subnet_tasks, serve

REPO = Path(__file__).resolve().parents[1]
PACKAGES = "python3,python3-venv,ca-certificates"
VENV = "/opt/hwnas-agent"
TARGET = "arm64-qemu-ort"
AGENT = "arm64-qemu"
SPACE = "ofa_mbv3_d234_e346_k357_demo"
SETTINGS = {"warmup_runs": 2, "warmup_seconds": 0.0, "runs": 10, "retries": 0}
"""Few runs: each one is emulated, and the figures are not what is being shown."""
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
HOST_CA = "/etc/hwnas-host-ca.pem"


def unavailable() -> str | None:
    """Why the userland cannot be built or run on this host (None when it can)."""
    if os.geteuid() != 0:
        return "needs root: chroot and a mount namespace"
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            return f"{tool} not found: apt-get install {package}"
    if not BINFMT.exists() or BINFMT.read_text().splitlines()[0] != "enabled":
        return (
            f"no enabled binfmt_misc handler for aarch64 ({BINFMT}): apt-get install qemu-user-static; if "
            "/proc/sys/fs/binfmt_misc is empty: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && "
            "update-binfmts --enable qemu-aarch64"
        )
    return None


def pip_conf() -> tuple[str, Path | None]:
    """This host's pip index settings as a pip.conf for the userland, and the CA bundle that file names.

    Local (``file://``) indexes and find-links are left out: they hold this host's wheels, not aarch64 ones.
    """
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    entries = [line.partition("=") for line in listed.splitlines()]
    for section in ("global", "install", ":env:"):  # later sections win, as in pip: PIP_* variables over files
        found |= {k.partition(".")[2]: v.strip("'\"") for k, _, v in entries if k.partition(".")[0] == section}
    lines = ["[global]", "disable-pip-version-check = true"]
    for key in ("index-url", "extra-index-url", "trusted-host"):
        urls = [u for u in found.get(key, "").split() if not u.startswith("file:")]
        if urls:
            lines.append(f"{key} = {' '.join(urls)}")
    cert = Path(found["cert"]) if found.get("cert") else None
    if cert is not None:
        lines.append(f"cert = {HOST_CA}")
    return "\n".join(lines) + "\n", cert


def in_rootfs(root: Path, command: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Run `command` chrooted in `root` with /proc and /dev mounted; its output (stdout and stderr).

    The mounts live in a private mount namespace, so they vanish with the command. /sys stays unmounted: with
    it, ONNX Runtime's cpuinfo finds the host's CPUs in /sys but no ARM core in /proc/cpuinfo (qemu-user passes
    the host's through) and crashes at import; without it, it warns and goes on. The environment is only
    `env` (and PATH, HOME, LANG): this host's PIP_* variables name paths that do not exist in the userland.

    Raises:
        RuntimeError: the command failed (its output's tail says how).
    """
    mount = 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"'
    clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    run = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in clean.items()), "unshare", "--mount", "--propagation", "private",
         "sh", "-c", mount, str(root), *command], capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    output = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {root} exited {run.returncode}:\n{output[-3000:]}")
    return output


def build_rootfs(cache: Path, suite: str) -> float | None:
    """The arm64 userland in ``cache/rootfs``: built with mmdebstrap (seconds), or None when it is reused."""
    root, ready = cache / "rootfs", cache / "rootfs.ready"
    recipe = f"{suite} arm64 {PACKAGES}\n"
    if root.is_dir() and ready.exists() and ready.read_text() == recipe:
        return None
    partial = cache / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    start = time.perf_counter()
    run = subprocess.run(
        ["mmdebstrap", "--arch=arm64", "--variant=apt", f"--include={PACKAGES}", suite, str(partial)],
        capture_output=True, text=True,
    )  # fmt: skip
    if run.returncode != 0:
        raise RuntimeError(f"mmdebstrap {suite} arm64 failed:\n{(run.stdout + run.stderr)[-3000:]}")
    partial.rename(root)
    ready.write_text(recipe)
    return time.perf_counter() - start


def build_wheel(out: Path) -> Path:
    """This checkout's wheel (pure Python), built into `out`."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], check=True)
    return next(out.glob("hwnas-*.whl"))


def install(root: Path, wheel: Path) -> tuple[float, dict[str, str]]:
    """A fresh venv in the userland with `wheel` and its base dependencies: seconds, and the distributions installed."""
    conf, cert = pip_conf()
    (root / "etc/pip.conf").write_text(conf)
    if cert is not None:
        shutil.copyfile(cert, root / HOST_CA.lstrip("/"))
    shutil.copyfile(wheel, root / "tmp" / wheel.name)
    start = time.perf_counter()
    in_rootfs(root, ["python3", "-m", "venv", "--clear", VENV])
    in_rootfs(root, [f"{VENV}/bin/pip", "install", "--only-binary=:all:", f"/tmp/{wheel.name}"])
    seconds = time.perf_counter() - start
    frozen = in_rootfs(root, [f"{VENV}/bin/pip", "list", "--format=freeze"])
    pairs = (line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    return seconds, {name: version for name, version in pairs if name not in ("pip", "setuptools")}  # the venv's own


def run_agent(root: Path, service: Service, tasks: int) -> tuple[float, dt.datetime]:
    """``hwnas-agent`` in the userland until it has measured `tasks` tasks: its wall seconds and start time (UTC)."""
    started = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    in_rootfs(
        root,
        [f"{VENV}/bin/hwnas-agent", "--target", TARGET, "--name", AGENT, "--max-tasks", str(tasks),
         "--poll", "0.5", "--idle-exit", "120"],
        env={"HWNAS_SERVER": service.url, "HWNAS_TOKEN": service.token, "OMP_NUM_THREADS": "1"},
        timeout=300 + 300 * tasks,
    )  # fmt: skip
    return time.perf_counter() - start, started


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)  # SQLite drops the zone


def check(service: Service, http: httpx.Client, ids: list[int], started: dt.datetime) -> dict[str, Any]:
    """What the service stored: the agent's environment, per-task medians and seconds, agent start-up seconds.

    Raises:
        RuntimeError: a task is not DONE, lacks its `LatencyMeasurement` by the agent, or was not measured on
            aarch64.
    """
    from sqlalchemy import select

    from store.db import Database
    from store.models import Agent, AgentTask, LatencyMeasurement

    [agent] = http.get("/v1/agents").json()["items"]
    tasks = [http.get(f"/v1/targets/{TARGET}/tasks/{i}").json() for i in ids]
    wrong = [t["id"] for t in tasks if t["status"] != "DONE" or t["result"]["environment"]["machine"] != "aarch64"]
    if wrong or agent["environment"]["machine"] != "aarch64":
        raise RuntimeError(f"tasks {wrong} not DONE on aarch64; agent environment {agent['environment']}")
    db = Database(service.db_url)
    with db.reader() as s:
        registered = _utc(s.scalars(select(Agent.created_at)).one())
        ends = s.scalars(select(AgentTask.finished_at).where(AgentTask.id.in_(ids)))
        finished = sorted(_utc(t) for t in ends if t is not None)
        recorded = list(s.scalars(select(LatencyMeasurement.source).where(LatencyMeasurement.space == SPACE)))
    db.dispose()
    if recorded != [f"agent:{AGENT}"] * len(ids):
        raise RuntimeError(f"{len(recorded)} latency measurements recorded for {len(ids)} tasks: {recorded}")
    marks = [registered, *finished]
    return {
        "environment": agent["environment"],
        "medians_ms": [t["result"]["median_ms"] for t in tasks],
        "task_s": [(b - a).total_seconds() for a, b in itertools.pairwise(marks)],
        "startup_s": (registered - started).total_seconds(),
    }


def summary(figures: dict[str, Any], suite: str, cache: Path, tasks: int) -> str:
    """The figures of a run as the Markdown recorded in BENCHMARKS.md."""
    env, versions, task_s = figures["environment"], figures["versions"], figures["task_s"]
    rootfs_s = figures["rootfs_s"]
    return "\n".join(
        [
            "**Agent on aarch64 (qemu-user).** `hwnas-agent` installed with `pip install hwnas-*.whl` (base "
            f"dependencies only, aarch64 wheels from the package index) into a fresh venv in a Debian {suite} "
            "arm64 userland (mmdebstrap), run chrooted under qemu-user against the API on 127.0.0.1. Latencies "
            "under emulation mean nothing; the figures show that the install and the protocol work on aarch64.",
            "",
            f"- rootfs: {f'reused from {cache}' if rootfs_s is None else f'built in {rootfs_s:.0f} s'}",
            f"- install (venv + pip): {figures['install_s']:.0f} s; onnxruntime {versions.get('onnxruntime')}, "
            f"numpy {versions.get('numpy')}, httpx {versions.get('httpx')}, {len(versions)} distributions in all "
            f"({', '.join(sorted(versions))})",
            f"- tasks completed: {tasks} ({SPACE} subnets, {SETTINGS['runs']} timed runs each), each DONE on the "
            f"service with its latency measurement recorded (source agent:{AGENT})",
            f"- agent's reported environment: machine {env['machine']}, {env['runtime']} {env['runtime_version']}, "
            f"providers {env['providers']}, Python {env['python']}, {env['os']}; cpu_model {env['cpu_model']!r} "
            "is the host's (qemu-user passes /proc/cpuinfo through)",
            f"- agent start-up to registration (emulated imports): {figures['startup_s']:.1f} s; wall per task "
            f"(claim, download, measure, post) under emulation: median {statistics.median(task_s):.1f} s "
            f"(min {min(task_s):.1f}, max {max(task_s):.1f}); measured medians "
            f"{min(figures['medians_ms']):.1f}-{max(figures['medians_ms']):.1f} ms; agent process "
            f"{figures['agent_s']:.0f} s",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns its figures (for tests)."""
    parser = argparse.ArgumentParser(prog="python -m bench.arm_agent", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5, help="measurement tasks the agent completes")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hwnas-arm64"), help="where the rootfs is kept")
    parser.add_argument("--suite", default="bookworm", help="Debian suite of the userland")
    parser.add_argument("--wheel", type=Path, help="an hwnas wheel to install (default: build this checkout's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled subnets")
    parser.add_argument("--no-record", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")
    reason = unavailable()
    if reason:
        parser.error(reason)
    rootfs_s = build_rootfs(args.cache, args.suite)
    root = args.cache / "rootfs"
    print(f"rootfs: {'reused' if rootfs_s is None else f'built in {rootfs_s:.0f} s'} ({root})")
    with tempfile.TemporaryDirectory(prefix="hwnas-arm-") as tmp:
        wheel = args.wheel or build_wheel(Path(tmp) / "wheels")
        install_s, versions = install(root, wheel)
        print(f"installed {wheel.name} and {len(versions) - 1} dependencies in {install_s:.0f} s")
        with (
            serve(Path(tmp) / "home") as service,
            httpx.Client(
                base_url=service.url, headers={"Authorization": f"Bearer {service.token}"}, timeout=60
            ) as http,
        ):
            from nas.spaces import get_space

            http.post("/v1/targets", json={"name": TARGET, "device": "arm64 (qemu-user)"}).raise_for_status()
            ids = queue_subnet_tasks(http, TARGET, get_space(SPACE).sample(args.seed, args.tasks), SPACE, SETTINGS)
            agent_s, started = run_agent(root, service, args.tasks)
            figures = check(service, http, ids, started)
    figures |= {"rootfs_s": rootfs_s, "install_s": install_s, "versions": versions, "agent_s": agent_s}
    body = summary(figures, args.suite, args.cache, len(ids))
    print(body)
    if not args.no_record:
        from bench.report import record

        record("bench.arm_agent", body)
    return figures


if __name__ == "__main__":
    main()

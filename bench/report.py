"""Recording benchmark figures in BENCHMARKS.md: one section per script, replaced on each run."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nWritten by the scripts under `bench/`; each section says how it was measured.\n"


def machine() -> str:
    """CPU model, cores, vector ISA torch dispatches to, Python and torch versions of this machine."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    import torch

    # convolution speed differs ~4-5x between AVX2 and AVX-512 hosts that all call themselves "AMD EPYC"
    return (
        f"{model} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )


def record(module: str, body: str, part: str | None = None) -> None:
    """Replace (or append) the section of benchmark `module` (e.g. "bench.supernet") in BENCHMARKS.md.

    A `part` (e.g. "quality" of bench.search) gets a section of its own, "<module> <part>".
    """
    command = "python -m " + " ".join([module, *sys.argv[1:]])
    name = f"{module} {part}" if part else module
    section = (
        f"<!-- begin {name} -->\n## {name}\n\n"
        f"- command: `{command}`\n- machine: {machine()}\n- date: {dt.date.today().isoformat()}\n\n"
        f"{body.strip()}\n<!-- end {name} -->\n"
    )
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    BENCHMARKS.write_text(text)

"""Training checkpoints: weights and optimiser tensors as safetensors, everything else as JSON; no pickle.

Layout of ``<out_dir>/checkpoint/``::

    weights.safetensors     the supernet (OFA keys)
    optimizer.safetensors   the optimiser's per-parameter tensors (momentum buffers)
    teacher.safetensors     progressive shrinking: the frozen full network (when it exists)
    state.json              config, progress, history, torch RNG state, param groups, sha256 of each file

A checkpoint is written to a new directory and swapped in, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import Tensor

CHECKPOINT = "checkpoint"
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint is corrupt, incomplete, or belongs to another run."""


@dataclass
class TrainState:
    """Where a run is: the phase in progress, epochs done in it, steps done in all, and the history."""

    phase: int = 0
    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    state: TrainState
    weights: dict[str, Tensor]
    optimizer: dict[str, Any]
    teacher: dict[str, Tensor] | None
    rng_state: Tensor
    metadata: dict[str, Any]
    cuda_rng_state: Tensor | None = None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _optimizer_to_files(optimizer_state: dict[str, Any]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors = {
        f"{index}.{name}": value.contiguous()
        for index, per_param in optimizer_state["state"].items()
        for name, value in per_param.items()
        if isinstance(value, Tensor)
    }
    return tensors, optimizer_state["param_groups"]


def _optimizer_from_files(tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    out_dir: Path,
    *,
    config: BaseModel,
    state: TrainState,
    weights: dict[str, Tensor],
    optimizer_state: dict[str, Any],
    teacher: dict[str, Tensor] | None,
    metadata: dict[str, Any],
    cuda_rng_state: Tensor | None = None,
) -> Path:
    """Write a checkpoint atomically into ``out_dir/checkpoint`` and return its path.

    `config` is the run's configuration (a `TrainConfig`, or `nas.finetune_config.FinetuneConfig`).

    Tensors may live on any device; they are written from the CPU. `cuda_rng_state` is the
    generator state of the GPU a run trains on (dropout draws from it), kept for resuming there.
    """
    from safetensors.torch import save_file

    final = out_dir / CHECKPOINT
    new, old = out_dir / f"{CHECKPOINT}.new", out_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    opt_tensors, groups = _optimizer_to_files(optimizer_state)
    files = {"weights.safetensors": weights, "optimizer.safetensors": opt_tensors}
    if teacher is not None:
        files["teacher.safetensors"] = teacher
    for name, tensors in files.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(new / name))
    record = {
        "format": FORMAT,
        "config": config.model_dump(mode="json"),
        "state": asdict(state),
        "param_groups": groups,
        "torch_rng_state": torch.get_rng_state().tolist(),
        "cuda_rng_state": cuda_rng_state.tolist() if cuda_rng_state is not None else None,
        "metadata": metadata,
        "sha256": {name: _sha256(new / name) for name in files},
    }
    (new / "state.json").write_text(json.dumps(record, indent=1))
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint directory in `out_dir`, if any (also one left by a crash mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        if (out_dir / name / "state.json").is_file():
            return out_dir / name
    return None


def load_checkpoint(path: Path, config: BaseModel) -> Checkpoint:
    """Read and verify a checkpoint for a run with `config` (the model it was saved with).

    Raises:
        CheckpointError: unreadable or corrupt files (sha256 mismatch, naming the file), or a
            checkpoint written with another config (naming the fields that differ).
    """
    from safetensors.torch import load_file

    try:
        record = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: state.json is unreadable ({exc})") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: unknown format {record.get('format')!r}")
    try:  # re-validated, so fields added since the checkpoint was written compare at their defaults
        saved = type(config).model_validate(record["config"]).model_dump(mode="json")
    except ValidationError as error:
        raise CheckpointError(f"checkpoint {path}: its configuration is not valid now: {error}") from error
    current = config.model_dump(mode="json")
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in differing[:5])
        raise CheckpointError(
            f"checkpoint {path} belongs to another run ({details}); use another output directory or resume=False"
        )
    tensors: dict[str, dict[str, Tensor]] = {}
    for name, digest in record["sha256"].items():
        file = path / name
        if not file.is_file() or _sha256(file) != digest:
            raise CheckpointError(f"checkpoint {path}: {name} is missing or does not match its sha256 (corrupt)")
        tensors[name] = load_file(str(file))
    return Checkpoint(
        state=TrainState(**record["state"]),
        weights=tensors["weights.safetensors"],
        optimizer=_optimizer_from_files(tensors["optimizer.safetensors"], record["param_groups"]),
        teacher=tensors.get("teacher.safetensors"),
        rng_state=torch.tensor(record["torch_rng_state"], dtype=torch.uint8),
        metadata=record["metadata"],
        cuda_rng_state=(
            torch.tensor(record["cuda_rng_state"], dtype=torch.uint8) if record.get("cuda_rng_state") else None
        ),
    )

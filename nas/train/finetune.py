"""Fine-tuning one subnet of a trained supernet, with distillation from the supernet's largest subnet.

The static subnet is extracted with the supernet's weights and trained on the supernet's own
training split (its data, normalisation and augmentation, at the subnet's resolution) for a few
epochs: cross-entropy on the labels plus ``kd_ratio`` times the cross-entropy against the soft
outputs of the largest subnet, as in the supernet's training loop. The teacher is frozen and in
eval mode, its BatchNorm statistics recalibrated for it at the student's resolution (the
supernet's stored statistics belong to no subnet). At the end the student's BatchNorm statistics
are recalibrated (OFA's protocol, `BNCalibration.of_training_data`, the calibration every
evaluation and export of the supernet uses).

With an output directory, a checkpoint is written after every epoch and a later call resumes
from it; every random choice of an epoch is a function of (seed, epoch) and the torch generator's
state is checkpointed, so a resumed run gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nas.data import BatchLoader
from nas.finetune_config import FinetuneConfig
from nas.space import Arch
from nas.supernet import MobileNetV3, OFAMobileNetV3
from nas.train.checkpoint import CheckpointError, TrainState, find_checkpoint, load_checkpoint, save_checkpoint
from nas.train.config import FALLBACK_DEFAULTS, PRESET_DEFAULTS
from nas.train.evaluate import BNCalibration, calibrated_subnet, data_for, resize, score_subnet
from nas.train.loop import TrainingDivergedError, lr_at, param_groups, soft_cross_entropy


@dataclass(frozen=True)
class FinetuneEvent:
    """One fine-tuning step done.

    Attributes:
        epoch: the epoch (0-based).
        epochs: epochs in all.
        step: step within the epoch (0-based).
        steps: steps per epoch.
        loss: the step's loss (cross-entropy + kd_ratio * distillation).
        val_top1: on the event that ends an epoch, the BN-recalibrated student's top-1 on the
            validation split; None on the others.
    """

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    val_top1: float | None = None


@dataclass
class FinetuneResult:
    """What `finetune_subnet` returns.

    Attributes:
        subnet: the fine-tuned static subnet, BN-recalibrated with `calibration`, in eval mode.
        arch: the subnet's canonical arch.
        calibration: the BN calibration applied (export it with the same one).
        val_top1_before: the un-fine-tuned subnet's BN-recalibrated top-1 on the validation split.
        history: one record per epoch: epoch, loss (mean over its steps), val_top1, seconds.
        resumed_after_epochs: epochs an earlier call had done (read from the checkpoint).
    """

    subnet: MobileNetV3
    arch: Arch
    calibration: BNCalibration
    val_top1_before: float
    history: list[dict[str, Any]]
    resumed_after_epochs: int = 0


def finetune_subnet(
    supernet: OFAMobileNetV3,
    arch: Mapping[str, Any],
    config: FinetuneConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[FinetuneEvent], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the subnet `arch` of a trained supernet (the supernet is not modified).

    Args:
        supernet: a trained supernet whose metadata records its training data (`train_supernet`'s).
        arch: the subnet; its resolution is the training resolution.
        config: epochs, learning rate, batch size (default: the space preset's training batch),
            distillation weight, seed...
        out_dir: where to checkpoint after every epoch and resume from (None: no checkpoints).
        progress: called after every step.

    Raises:
        ValueError: invalid arch, a supernet without training-data records, a batch larger than the
            training split, or a checkpoint in `out_dir` of another fine-tuning (`CheckpointError`).
        TrainingDivergedError: the loss became NaN or infinite.
    """
    config = config or FinetuneConfig()
    space = supernet.space
    canon = space.canonical(arch)
    r = canon["r"]
    data, splits = data_for(supernet)
    calibration = BNCalibration.of_training_data(supernet)
    batch = config.batch_size or int(PRESET_DEFAULTS.get(space.name, FALLBACK_DEFAULTS)["batch_size"])
    loader = BatchLoader(
        splits["train"], batch_size=batch, mean=data.mean, std=data.std, shuffle=True, augment=True,
        hflip=data.hflip, seed=config.seed, drop_last=True, limit=config.train_images,
    )  # fmt: skip
    if len(loader) == 0:
        raise ValueError(f"batch_size {batch} exceeds the training split ({len(splits['train'].labels)} images)")
    teacher = calibrated_subnet(supernet, {**space.max_arch(), "r": r}, calibration).requires_grad_(False)

    def val_top1(module: MobileNetV3) -> float:
        scored = copy.deepcopy(module)  # recalibrating a copy leaves the training statistics alone
        calibration.apply(scored, r)
        return score_subnet(scored, data, splits["val"], r).top1

    torch.manual_seed(config.seed)
    student = supernet.extract(canon)
    before = val_top1(student)
    optimizer = torch.optim.SGD(
        param_groups(student, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=True
    )
    state = TrainState()
    out = Path(out_dir) if out_dir is not None else None
    found = find_checkpoint(out) if out is not None else None
    if found is not None:
        ckpt = load_checkpoint(found, config)
        if ckpt.metadata.get("arch") != canon:
            raise CheckpointError(f"checkpoint {found} fine-tunes {ckpt.metadata.get('arch')}, not {canon}")
        student.load_state_dict(ckpt.weights)
        optimizer.load_state_dict(ckpt.optimizer)
        torch.set_rng_state(ckpt.rng_state)
        state = ckpt.state
        before = float(ckpt.metadata["val_top1_before"])
    resumed = state.epoch
    steps, total = len(loader), config.epochs * len(loader)
    while state.epoch < config.epochs:
        student.train()
        start, loss_sum = time.perf_counter(), 0.0
        for step, (x_full, y) in enumerate(loader.epoch(state.epoch)):
            x = resize(x_full, r)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.global_step, total, 0, config.lr)
            with torch.no_grad():
                soft = F.softmax(teacher(x), dim=1)
            logits = student(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            loss = loss + config.kd_ratio * soft_cross_entropy(logits, soft)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingDivergedError(
                    f"fine-tuning loss became {value} in epoch {state.epoch}, step {step}; lower the learning rate"
                )
            optimizer.step()
            state.global_step += 1
            loss_sum += value
            if progress is not None and step < steps - 1:
                progress(FinetuneEvent(state.epoch, config.epochs, step, steps, value))
        record = {"epoch": state.epoch, "loss": loss_sum / steps, "val_top1": val_top1(student),
                  "seconds": time.perf_counter() - start}  # fmt: skip
        state.history.append(record)
        if progress is not None:
            progress(FinetuneEvent(state.epoch, config.epochs, steps - 1, steps, value, record["val_top1"]))
        state.epoch += 1
        if out is not None:
            save_checkpoint(
                out, config=config, state=state, weights=student.state_dict(), optimizer_state=optimizer.state_dict(),
                teacher=None, metadata={"arch": canon, "val_top1_before": before},
            )  # fmt: skip
    student.eval()
    calibration.apply(student, r)
    return FinetuneResult(student, canon, calibration, before, state.history, resumed)

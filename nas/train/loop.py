"""The supernet training loop.

Phases of a strategy, elastic resolution per batch, distillation, a cosine schedule with warm-up,
a checkpoint every epoch, exact resume, and optional data parallelism.

Every random choice of an epoch (batch order, augmentation, resolutions, sampled subnets) is a
function of (seed, phase, epoch), so resuming from an epoch-end checkpoint reproduces an
uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nas.data import BatchLoader, load_dataset, split_dataset
from nas.space import Arch
from nas.spaces import get_space
from nas.supernet import OFAMobileNetV3, build_supernet
from nas.supernet.static import ResidualBlock
from nas.train.checkpoint import TrainState, find_checkpoint, load_checkpoint, save_checkpoint
from nas.train.config import TrainConfig
from nas.train.evaluate import resize
from nas.train.strategies import Phase, get_strategy


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class ProgressEvent:
    """One training step done.

    Attributes:
        phase: name of the phase.
        phase_index: its position (0-based) among `phases` phases.
        phases: number of phases.
        epoch: epoch within the phase (0-based).
        epochs: epochs of the phase.
        step: step within the epoch (0-based).
        steps: steps per epoch.
        loss: mean loss over the subnets of this step.
        images_per_s: training images per second over this epoch so far.
        eta_s: estimated seconds until training ends.
        val_acc_largest: on the event that ends an epoch (with `TrainConfig.epoch_validation`), the
            largest subnet's BN-recalibrated top-1 on the validation split; None on the others.
        val_acc_smallest: the same for the smallest subnet.
    """

    phase: str
    phase_index: int
    phases: int
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    images_per_s: float
    eta_s: float
    val_acc_largest: float | None = None
    val_acc_smallest: float | None = None


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel group (torch.distributed is initialised by the caller)."""

    rank: int
    world_size: int


@dataclass
class TrainRun:
    """The result of `train_supernet`.

    Attributes:
        supernet: the trained supernet (eval mode); `supernet.metadata` records the data.
        config: the configuration.
        out_dir: where the checkpoint lives.
        history: one record per epoch (phase, epoch, loss, seconds, images/s).
    """

    supernet: OFAMobileNetV3
    config: TrainConfig
    out_dir: Path
    history: list[dict[str, Any]]


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up for `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weight decay on conv/linear weights and kernel matrices, none on BN parameters and biases."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in net.named_parameters():
        (no_decay if ".bn." in name or name.endswith("bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross-entropy against soft targets (knowledge distillation)."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _allreduce_grads(net: torch.nn.Module, world_size: int) -> None:
    import torch.distributed as dist

    params = [p for p in net.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def train_supernet(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    parallel: DataParallel | None = None,
    device: str | torch.device = "cpu",
) -> TrainRun:
    """Train a supernet as `config` says, checkpointing into `out_dir` after every epoch.

    Args:
        config: the run's configuration.
        out_dir: directory for the checkpoint (created if needed).
        progress: called after every step.
        resume: continue from the checkpoint in `out_dir` if there is one.
        parallel: rank and world size when run data-parallel (see `workers.ray_tasks.train`).
        device: where the supernet trains ("cpu", "cuda", "cuda:1"). Not part of the
            configuration: a run checkpointed on one device resumes on another. The data stay
            on the CPU (loading, augmentation) and each batch is copied over.

    Raises:
        KeyError: unknown dataset, space or strategy.
        ValueError: bad dataset files or arguments (before any training), an unusable
            checkpoint, or a device this machine does not have.
        FileNotFoundError: the dataset is missing.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    parallel = parallel or DataParallel(0, 1)
    return _Trainer(config, Path(out_dir), progress, parallel, training_device(device, parallel)).run(resume)


def training_device(device: str | torch.device, parallel: DataParallel) -> torch.device:
    """Check that `device` exists here and suits the run; returns it as a `torch.device`.

    Raises:
        ValueError: an unknown device string, or a CUDA device this machine lacks. A data-parallel
            run on CUDA needs a process group whose backend reduces CUDA tensors (NCCL): the flat
            gradient lives on the training device.
    """
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {str(device)!r} ({exc}); use 'cpu', 'cuda' or 'cuda:N'") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device {str(device)!r} asked for, but torch {torch.__version__} sees no CUDA GPU here; "
                "train on 'cpu' or install a CUDA build of torch on a machine with a GPU"
            )
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"device {str(device)!r} asked for, but this machine has {count} CUDA GPU(s)")
    elif chosen.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported for training; use 'cpu' or 'cuda'")
    return chosen


@torch.no_grad()
def zero_init_residual_bn(net: OFAMobileNetV3) -> None:
    """Set the scale of the last BN of every block with a shortcut to 0: each such block starts as the identity."""
    for block in net.blocks:
        if isinstance(block, ResidualBlock) and block.shortcut:
            last_bn = [m for m in block.conv.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
            last_bn.weight.zero_()


class _Trainer:
    """One training run: set-up, the phase/epoch/step loops, checkpoints."""

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        progress: ProgressCallback | None,
        parallel: DataParallel,
        device: torch.device,
    ) -> None:
        self.config, self.out, self.progress, self.parallel = config, out, progress, parallel
        self.device = device
        self.strategy = get_strategy(config.strategy)
        data = load_dataset(config.dataset, config.data_dir)
        splits = split_dataset(data, config.val_fraction, config.seed)
        self.data, self.splits = data, splits
        space = get_space(
            config.space, in_channels=data.channels, num_classes=data.num_classes, resolutions=config.resolutions
        )
        self.phases = self.strategy.phases(config, space)
        torch.manual_seed(config.seed)
        self.net = build_supernet(space)
        if config.zero_init_residual_bn:
            zero_init_residual_bn(self.net)
        self.net.metadata = {
            "data": {
                "dataset": config.dataset,
                "data_dir": config.data_dir,
                "val_fraction": config.val_fraction,
                "seed": config.seed,
            },
            "classes": list(data.classes),
            "mean": list(data.mean),
            "std": list(data.std),
            "bn_recal_images": config.recal_images,
            "strategy": config.strategy,
            "in_channels": data.channels,
            "num_classes": data.num_classes,
        }
        self.net.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.loader = BatchLoader(
            splits["train"], batch_size=config.batch, mean=data.mean, std=data.std, shuffle=True,
            augment=True, hflip=data.hflip, seed=config.seed, drop_last=True, limit=config.train_images,
        )  # fmt: skip
        if len(self.loader) == 0:
            raise ValueError(
                f"batch size {config.batch} exceeds the train split ({len(splits['train'].labels)} images)"
            )
        self.state = TrainState()
        self.teacher_weights: dict[str, Tensor] | None = None
        self.total_steps = sum(p.epochs for p in self.phases) * len(self.loader)
        self.clock = (time.perf_counter(), 0)

    def run(self, resume: bool) -> TrainRun:
        found = find_checkpoint(self.out) if resume else None
        opt_state = None
        if found is None:
            self._init_from()
        else:
            opt_state = self._resume(found)
        self.clock = (time.perf_counter(), self.state.global_step)
        while self.state.phase < len(self.phases):
            phase = self.phases[self.state.phase]
            if opt_state is None and phase.sort_channels is not None:
                self.net.sort_channels(phase.sort_channels)
            teacher = self._teacher(phase)
            optimizer = torch.optim.SGD(
                param_groups(self.net, self.config.decay), lr=phase.lr, momentum=self.config.momentum, nesterov=True
            )
            if opt_state is not None:
                optimizer.load_state_dict(opt_state)
                opt_state = None
            self._run_phase(phase, teacher, optimizer)
        self.net.to("cpu").eval()
        return TrainRun(supernet=self.net, config=self.config, out_dir=self.out, history=self.state.history)

    def _init_from(self) -> None:
        """A fresh run: load `config.init_from`'s pretrained weights, if any (`nas.supernet.transfer`).

        What was loaded, adapted or initialised goes into the supernet's metadata (``transfer``),
        and so into every checkpoint: a resumed run keeps the report and does not load again.
        """
        init = self.config.init_from
        if init is None:
            return
        if init.checkpoint is None:
            raise ValueError("init_from: artifact_id and supernet_id are the service's; give init_from.checkpoint")
        from nas.supernet.transfer import read_pretrained, transfer_weights

        path = Path(init.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"init_from.checkpoint: no file {init.checkpoint}")
        try:
            report = transfer_weights(self.net, read_pretrained(path))
        except ValueError as exc:
            raise ValueError(f"init_from.checkpoint {init.checkpoint}: {exc}") from None
        self.net.metadata["transfer"] = report.summary()

    def _resume(self, path: Path) -> dict[str, Any] | None:
        """Load the checkpoint at `path`; returns the optimiser state to restore."""
        ckpt = load_checkpoint(path, self.config)
        self.net.load_state_dict(ckpt.weights)
        if "transfer" in ckpt.metadata:
            self.net.metadata["transfer"] = ckpt.metadata["transfer"]
        self.state, self.teacher_weights = ckpt.state, ckpt.teacher
        torch.set_rng_state(ckpt.rng_state)
        if self.device.type == "cuda" and ckpt.cuda_rng_state is not None:
            torch.cuda.set_rng_state(ckpt.cuda_rng_state, self.device)
        return ckpt.optimizer if ckpt.optimizer["param_groups"] else None

    def _teacher(self, phase: Phase) -> OFAMobileNetV3 | None:
        if not phase.frozen_teacher:
            return None
        if self.teacher_weights is None:
            raise ValueError(f"phase {phase.name!r} distils from the full network, but no full-network weights exist")
        teacher = copy.deepcopy(self.net)
        teacher.load_state_dict(self.teacher_weights)
        teacher.set_active(teacher.space.max_arch())
        return teacher.eval().requires_grad_(False)

    def _run_phase(self, phase: Phase, teacher: OFAMobileNetV3 | None, optimizer: torch.optim.Optimizer) -> None:
        state = self.state
        while state.epoch < phase.epochs:
            state.history.append(self._epoch(phase, teacher, optimizer))
            state.epoch += 1
            finished = state.epoch == phase.epochs
            if finished:
                state.phase, state.epoch = state.phase + 1, 0
                if phase.name == "full":
                    self.teacher_weights = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            if self.parallel.rank == 0:
                save_checkpoint(
                    self.out, config=self.config, state=state, weights=self.net.state_dict(),
                    # a finished phase's optimiser is not carried into the next phase
                    optimizer_state={"state": {}, "param_groups": []} if finished else optimizer.state_dict(),
                    teacher=self.teacher_weights, metadata=self.net.metadata,
                    cuda_rng_state=torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                )  # fmt: skip
            if self.parallel.world_size > 1:
                import torch.distributed as dist

                dist.barrier()
            if finished:
                return

    def _epoch(self, phase: Phase, teacher: OFAMobileNetV3 | None, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        state, config, loader = self.state, self.config, self.loader
        rank, world = self.parallel.rank, self.parallel.world_size
        rng = np.random.default_rng([config.seed, state.phase, state.epoch])
        warmup = round(config.warmup_epochs * len(loader)) if state.phase == 0 else 0
        self.net.train()
        start, images, loss_sum = time.perf_counter(), 0, 0.0
        for step, (x_full, y_full) in enumerate(loader.epoch(state.phase * 100_000 + state.epoch)):
            resolution = int(rng.choice(phase.space.resolutions))
            archs = self.strategy.step_archs(phase, config, rng, resolution)
            x = x_full[rank::world].to(self.device, non_blocking=True)
            y = y_full[rank::world].to(self.device, non_blocking=True)
            lr = lr_at(state.epoch * len(loader) + step, phase.epochs * len(loader), warmup, phase.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            step_loss = self._step(teacher, archs, x, y)
            if not math.isfinite(step_loss):
                raise TrainingDivergedError(
                    f"loss became {step_loss} in phase {phase.name!r}, epoch {state.epoch}, step {step} "
                    f"(lr {lr:.3g}); training stopped and the last good checkpoint in {self.out} is kept; "
                    "lower the learning rate"
                )
            if world > 1:
                _allreduce_grads(self.net, world)
            optimizer.step()
            state.global_step += 1
            images += len(y_full)
            loss_sum += step_loss
            if self.progress is not None:
                self._report(phase, step, step_loss, images / max(time.perf_counter() - start, 1e-9))
        seconds = time.perf_counter() - start
        loss, speed = loss_sum / len(loader), images / seconds
        record: dict[str, Any] = {"phase": phase.name, "epoch": state.epoch, "loss": loss, "seconds": seconds,
                                  "images_per_s": speed}  # fmt: skip
        if config.epoch_validation and rank == 0 and self.device.type == "cpu":
            scores = self._validate(phase)
            record.update(scores)
            if self.progress is not None:
                self._report(phase, len(loader) - 1, loss, speed, **scores)
        return record

    def _validate(self, phase: Phase) -> dict[str, float]:
        """The phase's largest and smallest subnets' BN-recalibrated top-1 on the validation split.

        `evaluate` works on extracted copies with its own calibration seed, so neither the weights
        nor the random streams of training change: a resumed run stays bit-exact.
        """
        from nas.train.evaluate import evaluate

        scores = {}
        for name, arch in (("largest", phase.space.max_arch()), ("smallest", phase.space.min_arch())):
            result = evaluate(self.net, arch, "val", data=self.data, splits=self.splits,
                              recal_images=self.config.recal_images)  # fmt: skip
            scores[f"val_acc_{name}"] = result.top1
        return scores

    def _report(self, phase: Phase, step: int, loss: float, images_per_s: float, **validation: float) -> None:
        assert self.progress is not None
        state = self.state
        started, start_step = self.clock
        per_step = (time.perf_counter() - started) / max(1, state.global_step - start_step)
        self.progress(
            ProgressEvent(
                phase=phase.name,
                phase_index=state.phase,
                phases=len(self.phases),
                epoch=state.epoch,
                epochs=phase.epochs,
                step=step,
                steps=len(self.loader),
                loss=loss,
                images_per_s=images_per_s,
                eta_s=per_step * (self.total_steps - state.global_step),
                val_acc_largest=validation.get("val_acc_largest"),
                val_acc_smallest=validation.get("val_acc_smallest"),
            )
        )

    def _step(self, teacher: OFAMobileNetV3 | None, archs: list[Arch], x: Tensor, y: Tensor) -> float:
        """Forward and backward every subnet of the step, each on `x` at its resolution; returns their mean loss."""
        config, inplace = self.config, self.strategy.inplace_teacher
        resized: dict[int, Tensor] = {}

        def at(resolution: int) -> Tensor:
            if resolution not in resized:
                resized[resolution] = resize(x, resolution)
            return resized[resolution]

        soft: Tensor | None = None
        if teacher is not None:
            with torch.no_grad():
                soft = F.softmax(teacher(at(archs[0]["r"])), dim=1)
        total = 0.0
        for i, arch in enumerate(archs):
            self.net.set_active(arch)
            logits = self.net(at(arch["r"]))
            if inplace and i > 0:
                assert soft is not None
                loss = config.kd_ratio * soft_cross_entropy(logits, soft)
                if config.distilled_label_weight:
                    loss = loss + config.distilled_label_weight * F.cross_entropy(logits, y)
            else:
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                if soft is not None:
                    loss = loss + config.kd_ratio * soft_cross_entropy(logits, soft)
            if inplace and i == 0:
                soft = F.softmax(logits.detach(), dim=1)
            loss.backward()  # type: ignore[no-untyped-call]
            total += float(loss.detach())
        return total / len(archs)


def load_run(out_dir: str | Path) -> TrainRun:
    """The supernet and history of the run checkpointed in `out_dir` (finished or not).

    Raises:
        FileNotFoundError: no checkpoint in `out_dir`.
        CheckpointError: the checkpoint is corrupt.
    """
    out = Path(out_dir)
    path = find_checkpoint(out)
    if path is None:
        raise FileNotFoundError(f"no training checkpoint in {out}")
    config = TrainConfig.model_validate(json.loads((path / "state.json").read_text())["config"])
    ckpt = load_checkpoint(path, config)
    meta = ckpt.metadata
    space = get_space(
        config.space, in_channels=meta["in_channels"], num_classes=meta["num_classes"], resolutions=config.resolutions
    )
    net = build_supernet(space)
    net.load_state_dict(ckpt.weights)
    net.metadata = meta
    return TrainRun(supernet=net.eval(), config=config, out_dir=out, history=ckpt.state.history)

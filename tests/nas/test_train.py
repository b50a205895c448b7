"""Supernet training on the bundled demo set (real sklearn digits): strategies, resume, bad input, evaluation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas.space import SearchSpace
from nas.spaces import get_space
from nas.supernet import OFAMobileNetV3, build_supernet
from nas.supernet.dynamic import DynamicMBConv
from nas.supernet.static import ResidualBlock
from nas.train import (
    CheckpointError,
    PhaseConfig,
    ProgressEvent,
    TrainConfig,
    TrainingDivergedError,
    evaluate,
    load_run,
    recalibrate_bn,
    train_supernet,
)
from nas.train.loop import lr_at
from nas.train.strategies import get_strategy, split_epochs

PS_LRS = {"full": 0.1, "kernel": 0.03, "depth_1": 0.01, "depth_2": 0.01, "expand_1": 0.01, "expand_2": 0.01}
PS_PHASES = [PhaseConfig(name=name, epochs=1, lr=lr) for name, lr in PS_LRS.items()]


def demo_config(**overrides: object) -> TrainConfig:
    """The bundled digits; 320 training images (10 steps of 32) unless overridden, to keep runs short."""
    base: dict[str, object] = {
        "dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 320, "num_random": 1, "bn_recal_images": 256
    }  # fmt: skip
    return TrainConfig.model_validate(base | overrides)


class SimulatedCrashError(Exception):
    pass


def crash_at(phase_index: int, epoch: int, step: int):  # type: ignore[no-untyped-def]
    def callback(event: ProgressEvent) -> None:
        if (event.phase_index, event.epoch, event.step) == (phase_index, epoch, step):
            raise SimulatedCrashError

    return callback


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_sandwich_epoch_learns_and_checkpoints(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    run = train_supernet(demo_config(epochs=3, train_images=None), tmp_path, progress=events.append)
    assert len(run.history) == 3 and all(np.isfinite(h["loss"]) for h in run.history)
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    assert (tmp_path / "checkpoint" / "weights.safetensors").is_file()
    assert events and events[-1].eta_s == pytest.approx(0.0, abs=1e-6) and events[0].eta_s > 0
    assert all(e.images_per_s > 0 and e.phase == "sandwich" for e in events)
    space = run.supernet.space
    ends = [e for e in events if e.val_acc_largest is not None]  # one event per epoch carries the curves
    assert [(e.epoch, e.step) for e in ends] == [(i, e.steps - 1) for i, e in enumerate(ends)] and len(ends) == 3
    assert [h["val_acc_largest"] for h in run.history] == [e.val_acc_largest for e in ends]
    assert [h["val_acc_smallest"] for h in run.history] == [e.val_acc_smallest for e in ends]
    assert run.history[-1]["val_acc_largest"] == evaluate(run.supernet, space.max_arch(), "val").top1
    assert run.history[-1]["val_acc_smallest"] == evaluate(run.supernet, space.min_arch(), "val").top1
    top1_max = evaluate(run.supernet, space.max_arch(28), "test").top1
    # Far above chance (0.1); the exact figure varies with the CPU's kernels (0.80 on one Xeon, 0.83 on an EPYC).
    assert top1_max > 0.6, f"the largest subnet should be far above chance (0.1) after 3 epochs, got {top1_max}"
    assert 0.0 <= evaluate(run.supernet, space.min_arch(24), "val").top1 <= 1.0


def test_progressive_shrinking_runs_all_phases(tmp_path: Path) -> None:
    run = train_supernet(demo_config(strategy="progressive_shrinking", phases=PS_PHASES), tmp_path)
    assert [h["phase"] for h in run.history] == [p.name for p in PS_PHASES]
    assert (tmp_path / "checkpoint" / "teacher.safetensors").is_file()
    assert all(np.isfinite(h["loss"]) for h in run.history)


@pytest.mark.parametrize(
    ("overrides", "crash"),
    [
        ({"epochs": 2}, (0, 1, 3)),
        pytest.param(  # after sort + teacher; ~22 s, so slow: the sandwich case covers the resume path by default
            {"strategy": "progressive_shrinking", "phases": PS_PHASES[:5]}, (4, 0, 2), marks=pytest.mark.slow
        ),
    ],
    ids=["sandwich", "progressive_shrinking"],
)
def test_resume_reproduces_an_uninterrupted_run(
    tmp_path: Path, overrides: dict[str, object], crash: tuple[int, int, int]
) -> None:
    config = demo_config(**overrides)
    straight = train_supernet(config, tmp_path / "straight")
    with pytest.raises(SimulatedCrashError):
        train_supernet(config, tmp_path / "crashed", progress=crash_at(*crash))
    resumed = train_supernet(config, tmp_path / "crashed")
    assert_same_weights(straight.supernet, resumed.supernet)
    assert straight.history == [{**h, "seconds": s["seconds"], "images_per_s": s["images_per_s"]}
                                for h, s in zip(resumed.history, straight.history, strict=True)]  # fmt: skip
    assert_same_weights(straight.supernet, load_run(tmp_path / "crashed").supernet)


def _crash_after_first_epoch(out: Path, config: TrainConfig) -> Path:
    with pytest.raises(SimulatedCrashError):
        train_supernet(config, out, progress=crash_at(0, 1, 0))
    return out / "checkpoint"


def test_nan_loss_stops_and_leaves_the_checkpoint_alone(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    config = demo_config(epochs=2)
    ckpt = _crash_after_first_epoch(tmp_path, config)
    weights = load_file(str(ckpt / "weights.safetensors"))
    weights["classifier.linear.bias"] = torch.full_like(weights["classifier.linear.bias"], float("nan"))
    save_file(weights, str(ckpt / "weights.safetensors"))
    record = json.loads((ckpt / "state.json").read_text())
    record["sha256"]["weights.safetensors"] = hashlib.sha256((ckpt / "weights.safetensors").read_bytes()).hexdigest()
    (ckpt / "state.json").write_text(json.dumps(record))
    before = {f.name: f.read_bytes() for f in ckpt.iterdir()}
    with pytest.raises(TrainingDivergedError, match=r"loss became nan .*last good checkpoint"):
        train_supernet(config, tmp_path)
    assert {f.name: f.read_bytes() for f in ckpt.iterdir()} == before


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = _crash_after_first_epoch(tmp_path, demo_config(epochs=2))
    weights = ckpt / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors"):
        train_supernet(demo_config(epochs=2), tmp_path)


def test_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    train_supernet(demo_config(), tmp_path)
    with pytest.raises(CheckpointError, match="space"):
        train_supernet(demo_config(space="ofa_mbv3_d234_e346_k357_w1.0"), tmp_path)
    with pytest.raises(CheckpointError, match="lr"):
        train_supernet(demo_config(lr=0.01), tmp_path)


def test_a_checkpoint_from_before_a_new_config_field_resumes(tmp_path: Path) -> None:
    """A field added to TrainConfig since the checkpoint was written compares at its default."""
    config = demo_config(epochs=2)
    state_file = _crash_after_first_epoch(tmp_path, config) / "state.json"
    record = json.loads(state_file.read_text())
    first_epoch = record["state"]["history"][0]
    del record["config"]["distilled_label_weight"]  # as written by a version without the field
    state_file.write_text(json.dumps(record))
    resumed = train_supernet(config, tmp_path)
    assert resumed.history[0] == first_epoch and len(resumed.history) == 2
    record["config"]["distilled_label_weight"] = 0.5
    state_file.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="distilled_label_weight"):
        train_supernet(config, tmp_path)


def test_bad_input_fails_before_training(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown"):
        train_supernet(demo_config(dataset="no_such_dataset"), tmp_path / "a")
    with pytest.raises(KeyError, match="strategy"):
        train_supernet(demo_config(strategy="nope"), tmp_path / "b")
    np.savez(tmp_path / "bad.npz", x=np.zeros((10, 28, 28), dtype=np.float32), y=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="x"):
        train_supernet(demo_config(dataset="npz", data_dir=str(tmp_path / "bad.npz")), tmp_path / "c")
    with pytest.raises(ValueError, match="at least 6 epochs"):
        train_supernet(demo_config(strategy="progressive_shrinking", epochs=3), tmp_path / "d")
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"dataset": "demo", "learning_rate": 0.1})
    assert not any((tmp_path / n / "checkpoint").exists() for n in "abcd")


def test_training_device_is_checked_before_training(tmp_path: Path) -> None:
    from nas.train.loop import DataParallel

    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        train_supernet(demo_config(), tmp_path / "a", device="gpu0")
    with pytest.raises(ValueError, match="not supported for training"):
        train_supernet(demo_config(), tmp_path / "b", device="meta")
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA GPU"):
            train_supernet(demo_config(), tmp_path / "c", device=f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            train_supernet(demo_config(), tmp_path / "c", device="cuda", parallel=DataParallel(0, 2))
    assert not any((tmp_path / n).exists() for n in "abc")


def test_checkpoint_keeps_the_gpu_generator_state(tmp_path: Path) -> None:
    from nas.train.checkpoint import TrainState, load_checkpoint, save_checkpoint

    config = demo_config()
    gpu_state = torch.randint(0, 256, (16,), dtype=torch.uint8)

    def save(out: Path, cuda_rng_state: torch.Tensor | None) -> Path:
        return save_checkpoint(
            out, config=config, state=TrainState(), weights={"w": torch.ones(2)}, teacher=None,
            optimizer_state={"state": {}, "param_groups": []}, metadata={}, cuda_rng_state=cuda_rng_state,
        )  # fmt: skip

    with_gpu = load_checkpoint(save(tmp_path / "gpu", gpu_state), config)
    assert with_gpu.cuda_rng_state is not None and torch.equal(with_gpu.cuda_rng_state, gpu_state)
    assert load_checkpoint(save(tmp_path / "cpu", None), config).cuda_rng_state is None


@pytest.mark.cuda
def test_training_on_a_gpu_resumes_and_moves_between_devices(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    config = demo_config(epochs=2)
    straight = train_supernet(config, tmp_path / "straight", device="cuda")
    assert all(p.device.type == "cpu" for p in straight.supernet.parameters())
    assert straight.history[-1]["loss"] < straight.history[0]["loss"]
    with pytest.raises(SimulatedCrashError):
        train_supernet(config, tmp_path / "crashed", device="cuda", progress=crash_at(0, 1, 3))
    assert json.loads((tmp_path / "crashed" / "checkpoint" / "state.json").read_text())["cuda_rng_state"]
    resumed = train_supernet(config, tmp_path / "crashed", device="cuda")
    # cuDNN may pick other kernels after a restart: the same run up to float rounding, not bit for bit
    for key, value in straight.supernet.state_dict().items():
        torch.testing.assert_close(resumed.supernet.state_dict()[key], value, rtol=1e-3, atol=1e-4, msg=key)
    # a run checkpointed on the CPU continues on the GPU
    with pytest.raises(SimulatedCrashError):
        train_supernet(config, tmp_path / "moved", progress=crash_at(0, 1, 0))
    moved = train_supernet(config, tmp_path / "moved", device="cuda")
    assert len(moved.history) == 2 and np.isfinite(moved.history[-1]["loss"])
    assert evaluate(moved.supernet, moved.supernet.space.max_arch(28), "test").top1 > 0.1


def test_recalibrate_bn_is_the_weighted_average_of_batch_statistics() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.BatchNorm2d(3), nn.Dropout(0.5))
    batches = [torch.randn(4, 2, 5, 5), torch.randn(6, 2, 5, 5) + 1.0]
    model.eval()
    recalibrate_bn(model, batches)
    with torch.no_grad():
        outs = [conv(b) for b in batches]
    n = torch.tensor([4.0, 6.0])
    means = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs])
    variances = torch.stack([o.var(dim=(0, 2, 3), unbiased=False) for o in outs])
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None
    torch.testing.assert_close(bn.running_mean, (means * n[:, None]).sum(0) / 10)
    torch.testing.assert_close(bn.running_var, (variances * n[:, None]).sum(0) / 10)
    assert not any(m.training for m in model.modules()), "the caller's eval mode is restored everywhere"


def test_schedule_and_epoch_split() -> None:
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert split_epochs(6, [0.25] + [0.15] * 5) == [1] * 6
    assert sum(split_epochs(20, [0.25] + [0.15] * 5)) == 20
    phases = get_strategy("progressive_shrinking").phases(
        demo_config(strategy="progressive_shrinking", epochs=12), _space()
    )
    assert [p.sort_channels for p in phases] == [None, None, None, None, 1, 2]
    assert [p.frozen_teacher for p in phases] == [False, True, True, True, True, True]
    assert phases[0].space.size == len(phases[0].space.resolutions)  # only the full network


def _space() -> SearchSpace:
    return get_space("ofa_mbv3_d234_e346_k357_32px")


@pytest.mark.slow  # ~60 s; the default run trains on two Ray Train workers through REST (test_train_workers.py)
def test_two_ray_workers_train_data_parallel(tmp_path: Path) -> None:
    import ray

    from workers.ray_tasks.train import train_supernet_on_ray

    events: list[ProgressEvent] = []
    try:
        run = train_supernet_on_ray(
            demo_config(epochs=2, train_images=None), tmp_path, num_workers=2, progress=events.append
        )
    finally:
        ray.shutdown()
    assert len(run.history) == 2 and all(np.isfinite(h["loss"]) for h in run.history)
    assert run.history[1]["loss"] < run.history[0]["loss"]
    assert events and events[-1].epoch == 1
    assert evaluate(run.supernet, run.supernet.space.max_arch(28), "test").top1 > 0.3


def test_the_short_budget_recipe_options(tmp_path: Path) -> None:
    """largest_first_epochs trains the largest alone first; zero_init_residual_bn makes residual blocks identities."""
    config = demo_config(epochs=2, largest_first_epochs=1, zero_init_residual_bn=True, train_images=64)
    sandwich = get_strategy("sandwich")
    phases = sandwich.phases(config, _space())
    assert [(p.name, p.epochs) for p in phases] == [("largest", 1), ("sandwich", 1)]
    rng = np.random.default_rng(0)
    assert sandwich.step_archs(phases[0], config, rng, 28) == [{**_space().max_arch(), "r": 28}]
    assert len(sandwich.step_archs(phases[1], config, rng, 28)) == 3

    from nas.train.loop import zero_init_residual_bn

    net = build_supernet(_space())
    zero_init_residual_bn(net)
    shortcut = [b.conv for b in net.blocks if isinstance(b, ResidualBlock) and b.shortcut]
    residual = [conv for conv in shortcut if isinstance(conv, DynamicMBConv)]
    assert residual and all(conv.point_linear.bn.bn.weight.abs().sum() == 0 for conv in residual)
    net.eval()
    for block in residual:  # a zero-scaled last BN (bias 0, fresh statistics) outputs zeros
        inner = torch.randn(2, block.spec.in_channels, 8, 8)
        torch.testing.assert_close(block(inner), torch.zeros_like(inner))

    run = train_supernet(config, tmp_path / "run")
    assert [h["phase"] for h in run.history] == ["largest", "sandwich"]
    for bad in ({"largest_first_epochs": 2}, {"largest_first_epochs": 1, "strategy": "progressive_shrinking"}):
        with pytest.raises(ValueError, match="largest_first_epochs"):
            demo_config(epochs=2, **bad)
    for option, value in (("largest_at_top_resolution", True), ("distilled_label_weight", 1.0)):
        with pytest.raises(ValueError, match=f"{option} is a sandwich option"):
            demo_config(strategy="progressive_shrinking", **{option: value})
    with pytest.raises(ValueError, match="zero_init_residual_bn"):
        demo_config(zero_init_residual_bn=True, init_from={"checkpoint": "x.pth"})


def test_the_largest_can_train_at_the_top_resolution_and_the_distilled_subnets_on_labels(tmp_path: Path) -> None:
    """The teacher at the largest resolution while the others take the step's; labels beside distillation."""
    config = demo_config(largest_at_top_resolution=True, epoch_validation=False, train_images=128)
    sandwich = get_strategy("sandwich")
    (phase,) = sandwich.phases(config, _space())
    archs = sandwich.step_archs(phase, config, np.random.default_rng(0), 24)
    assert [a["r"] for a in archs] == [32, 24, 24] and archs[0] == {**_space().max_arch(), "r": 32}
    shapes: list[int] = []

    def record_resolution(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if isinstance(module, OFAMobileNetV3):
            shapes.append(inputs[0].shape[-1])

    first_losses = {}
    for weight in (0.5, 0.0):
        events: list[ProgressEvent] = []
        shapes.clear()
        with nn.modules.module.register_module_forward_pre_hook(record_resolution):
            train_supernet(config.model_copy(update={"distilled_label_weight": weight}), tmp_path / str(weight),
                           progress=events.append)  # fmt: skip
        first_losses[weight] = events[0].loss
        steps = [shapes[i : i + 3] for i in range(0, len(shapes), 3)]
        assert len(steps) == 4 and all(step[0] == 32 and step[1] == step[2] for step in steps)
        assert any(step[1] != 32 for step in steps), steps
    # the same first step (same weights and batch) plus the labels' cross-entropy of the two distilled subnets
    assert first_losses[0.5] > first_losses[0.0]

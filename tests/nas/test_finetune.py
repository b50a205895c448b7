"""Fine-tuning one subnet of a tiny trained supernet (demo digits): it learns, resumes exactly, refuses bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from nas.finetune_config import FinetuneConfig
from nas.space import Arch
from nas.supernet import OFAMobileNetV3
from nas.train import BNCalibration, CheckpointError, TrainConfig, calibrated_subnet, train_supernet
from nas.train.evaluate import data_for, score_subnet
from nas.train.finetune import FinetuneEvent, finetune_subnet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1, "bn_recal_images": 64}
QUICK = FinetuneConfig(epochs=2, batch_size=32, train_images=320, lr=0.03)


@pytest.fixture(scope="module")
def supernet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OFAMobileNetV3]:
    yield train_supernet(TrainConfig.model_validate(TINY), tmp_path_factory.mktemp("tiny")).supernet


def middle_arch(net: OFAMobileNetV3) -> Arch:
    space = net.space
    return space.canonical({**space.sample(0), "r": space.resolutions[-1]})


class SimulatedCrashError(Exception):
    pass


def test_finetuning_learns_from_the_largest_subnet_and_leaves_the_supernet_alone(supernet: OFAMobileNetV3) -> None:
    arch = middle_arch(supernet)
    weights_before = {k: v.clone() for k, v in supernet.state_dict().items()}
    events: list[FinetuneEvent] = []
    result = finetune_subnet(supernet, arch, QUICK, progress=events.append)

    assert result.arch == arch and [h["epoch"] for h in result.history] == [0, 1]
    assert all(h["loss"] > 0 and 0 <= h["val_top1"] <= 1 for h in result.history)
    assert len(events) == 2 * 10 and [e.val_top1 is not None for e in events].count(True) == 2
    assert events[-1].val_top1 == result.history[-1]["val_top1"]
    # a supernet trained one epoch on 64 images is far from converged: ten steps per epoch help its subnet
    assert result.history[-1]["val_top1"] > result.val_top1_before
    data, splits = data_for(supernet)
    calibration = BNCalibration.of_training_data(supernet)
    extracted = calibrated_subnet(supernet, arch, calibration)
    x = calibration.inputs(arch["r"], n=8)
    with torch.no_grad():
        assert not torch.allclose(result.subnet(x), extracted(x), atol=1e-3)
    assert not result.subnet.training
    assert score_subnet(result.subnet, data, splits["val"], arch["r"]).top1 == result.history[-1]["val_top1"]
    for key, value in supernet.state_dict().items():
        assert torch.equal(value, weights_before[key]), key


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_a_crashed_finetuning_resumes_from_its_epoch_checkpoint_exactly(
    supernet: OFAMobileNetV3, tmp_path: Path
) -> None:
    arch = middle_arch(supernet)
    config = FinetuneConfig(epochs=2, batch_size=32, train_images=96, seed=3)
    straight = finetune_subnet(supernet, arch, config, out_dir=tmp_path / "straight")

    def crash(event: FinetuneEvent) -> None:
        if (event.epoch, event.step) == (1, 0):
            raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        finetune_subnet(supernet, arch, config, out_dir=tmp_path / "crashed", progress=crash)
    resumed = finetune_subnet(supernet, arch, config, out_dir=tmp_path / "crashed")
    assert resumed.resumed_after_epochs == 1 and straight.resumed_after_epochs == 0
    assert_same_weights(straight.subnet, resumed.subnet)
    assert [h["val_top1"] for h in resumed.history] == [h["val_top1"] for h in straight.history]
    assert resumed.val_top1_before == straight.val_top1_before

    with pytest.raises(CheckpointError, match="not"):  # the checkpoint of another subnet
        finetune_subnet(supernet, supernet.space.min_arch(), config, out_dir=tmp_path / "crashed")
    with pytest.raises(CheckpointError, match="seed"):  # or of other options
        finetune_subnet(supernet, arch, config.model_copy(update={"seed": 4}), out_dir=tmp_path / "crashed")


def test_bad_input_fails_before_training(supernet: OFAMobileNetV3) -> None:
    with pytest.raises(ValueError, match="batch_size 4000 exceeds the training split"):
        finetune_subnet(supernet, middle_arch(supernet), FinetuneConfig(batch_size=4000, epochs=1))
    with pytest.raises(ValueError, match="r"):
        finetune_subnet(supernet, {**middle_arch(supernet), "r": 7})
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)

"""Transfer from a pretrained supernet (issue 22): an "ImageNet" checkpoint in OFA's format into a grey 10-class
supernet, the refusals (other width, other keys, missing tensors, corrupt files), and training from it.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor

from nas.supernet import build_supernet
from nas.supernet.transfer import (
    adapt_first_conv,
    identify_pretrained,
    read_pretrained,
    save_pretrained,
    transfer_weights,
)
from nas.train import TrainConfig, train_supernet

SPACE = "ofa_mbv3_d234_e346_k357_32px"
W10 = "ofa_mbv3_d234_e346_k357_w1.0"
CLASSIFIER = {"classifier.linear.weight", "classifier.linear.bias"}


def legacy_keys(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """OFA's released key names: the dynamic blocks' ``conv`` module was ``mobile_inverted_conv``."""
    return {re.sub(r"^(blocks\.(?!0\.)\d+)\.conv\.", r"\1.mobile_inverted_conv.", k): v for k, v in state_dict.items()}


def imagenet_checkpoint(path: Path, space: str = SPACE) -> dict[str, Tensor]:
    """A fake "ImageNet" checkpoint (3 channels, 1000 classes, non-trivial BN statistics) saved as OFA saves one."""
    torch.manual_seed(1)
    source = build_supernet(space, in_channels=3, num_classes=1000)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            value.copy_(torch.rand_like(value) + 0.5)
    torch.save({"state_dict": legacy_keys(state)}, path)
    return state


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, dict[str, Tensor]]:
    path = tmp_path / "ofa_imagenet.pth"
    return path, imagenet_checkpoint(path)


def test_imagenet_checkpoint_into_a_grey_ten_class_supernet(checkpoint: tuple[Path, dict[str, Tensor]]) -> None:
    path, source = checkpoint
    torch.manual_seed(7)
    net = build_supernet(SPACE)  # the preset's 1 channel and 10 classes
    torch.manual_seed(7)
    fresh = build_supernet(SPACE).state_dict()

    report = transfer_weights(net, read_pretrained(path))

    state = net.state_dict()
    assert len(report.loaded) + len(report.adapted) + len(report.initialised) == len(state) == 475
    assert report.adapted.keys() == {"first_conv.conv.weight"}
    assert report.initialised.keys() == CLASSIFIER
    assert len(report.loaded) == 472
    for key in report.loaded:
        assert torch.equal(state[key], source[key]), key
    rgb = source["first_conv.conv.weight"]
    assert state["first_conv.conv.weight"].shape == (16, 1, 3, 3)
    torch.testing.assert_close(state["first_conv.conv.weight"], 3 * rgb.mean(dim=1, keepdim=True))
    grey = torch.rand(2, 1, 32, 32)  # the grey image's response is the checkpoint's to its RGB copy
    torch.testing.assert_close(
        torch.conv2d(grey, state["first_conv.conv.weight"]), torch.conv2d(grey.expand(-1, 3, -1, -1), rgb)
    )
    for key in CLASSIFIER:
        assert torch.equal(state[key], fresh[key]), key
    summary = report.summary()
    assert (summary["loaded"], summary["adapted"], summary["initialised"]) == (472, 1, 2)
    assert "3 -> 1" in summary["adapted_tensors"]["first_conv.conv.weight"]
    assert "1000 -> 10" in summary["initialised_tensors"]["classifier.linear.bias"]


def test_same_io_loads_everything_and_other_channel_counts_keep_the_scale() -> None:
    source = build_supernet(SPACE)
    report = transfer_weights(build_supernet(SPACE), source.state_dict())
    assert (len(report.loaded), report.adapted, report.initialised) == (475, {}, {})

    weight = torch.randn(8, 3, 3, 3)
    four = adapt_first_conv(weight, 4)
    assert four.shape == (8, 4, 3, 3)
    image = torch.rand(1, 1, 5, 5)
    torch.testing.assert_close(
        torch.conv2d(image.expand(-1, 4, -1, -1), four), torch.conv2d(image.expand(-1, 3, -1, -1), weight)
    )


def test_a_checkpoint_of_another_width_is_refused_and_nothing_is_loaded() -> None:
    net = build_supernet(W10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    w12 = build_supernet("ofa_mbv3_d234_e346_k357_w1.2").state_dict()
    with pytest.raises(ValueError, match=r"another space or width.*first_conv\.conv\.weight: checkpoint shape \[24"):
        transfer_weights(net, w12)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_other_keys_and_missing_tensors_are_refused() -> None:
    net = build_supernet(SPACE)
    state = net.state_dict()
    unrelated = {f"layer{i}.weight": torch.zeros(3) for i in range(5)} | {"fc.weight": torch.zeros(10, 512)}
    with pytest.raises(ValueError, match=r"unexpected key layer0\.weight"):
        transfer_weights(net, unrelated)
    # mostly matching, but a stage missing: refused, not half loaded
    partial = {k: v for k, v in state.items() if not k.startswith("blocks.20.")}
    with pytest.raises(ValueError, match=r"missing key blocks\.20\."):
        transfer_weights(net, partial)
    # only the optional tensors (kernel matrices, BN counters) may be absent: they keep their values
    optional = {k: v for k, v in state.items() if not k.endswith(("_matrix", "num_batches_tracked"))}
    report = transfer_weights(build_supernet(SPACE), optional)
    assert len(report.initialised) == len(state) - len(optional)
    assert all(reason.startswith("not in the checkpoint") for reason in report.initialised.values())


def test_the_published_w10_format_is_accepted(ref_shapes: dict[str, list[int]]) -> None:
    zeros = {
        k: torch.zeros(shape, dtype=torch.int64 if not shape else torch.float32) for k, shape in ref_shapes.items()
    }
    info = identify_pretrained(legacy_keys(zeros))
    assert (info.space, info.in_channels, info.num_classes, info.tensors) == (W10, 3, 1000, 475)
    report = transfer_weights(build_supernet(W10, in_channels=1, num_classes=10), legacy_keys(zeros))
    assert (len(report.loaded), len(report.adapted), len(report.initialised)) == (472, 1, 2)


def test_identify_names_the_space_or_the_closest_one(checkpoint: tuple[Path, dict[str, Tensor]]) -> None:
    path, _ = checkpoint
    info = identify_pretrained(read_pretrained(path))
    assert (info.space, info.in_channels, info.num_classes) == (SPACE, 3, 1000)
    w12 = build_supernet("ofa_mbv3_d234_e346_k357_w1.2").state_dict()
    del w12["blocks.5.conv.depth_conv.conv.conv.weight"]
    with pytest.raises(ValueError, match=r"fits no registered space.*closest, ofa_mbv3_d234_e346_k357_w1\.2.*missing"):
        identify_pretrained(w12)
    with pytest.raises(ValueError, match="not an OFA-MobileNetV3 state dict"):
        identify_pretrained({"fc.weight": torch.zeros(2, 2)})


def test_saved_pretrained_roundtrips_as_safetensors(checkpoint: tuple[Path, dict[str, Tensor]], tmp_path: Path) -> None:
    path, _ = checkpoint
    state = read_pretrained(path)
    out = tmp_path / "canonical"  # no suffix: told apart by content
    save_pretrained(state, identify_pretrained(state), out)
    again = read_pretrained(out)
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)


class NotATensor:
    pass


def truncated_torch_file(path: Path) -> None:
    torch.save({"w": torch.zeros(3)}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "neither a PyTorch checkpoint"),
        (lambda p: p.write_bytes(b""), "neither a PyTorch checkpoint"),
        (truncated_torch_file, "a corrupt PyTorch"),
        (lambda p: torch.save({"w": NotATensor()}, p), "objects other than tensors"),
        (lambda p: torch.save({"w": collections.OrderedDict(), "x": 3}, p), "holds no state_dict"),
        (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage"), "a corrupt safetensors"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(tmp_path: Path, content, reason: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "upload"
    content(path)
    with pytest.raises(ValueError, match=reason):
        read_pretrained(path)


def test_training_starts_from_the_checkpoint_once(checkpoint: tuple[Path, dict[str, Tensor]], tmp_path: Path) -> None:
    path, _ = checkpoint
    config = TrainConfig.model_validate(
        {"dataset": "demo", "epochs": 1, "batch_size": 32, "train_images": 64, "num_random": 1,
         "bn_recal_images": 64, "epoch_validation": False, "init_from": {"checkpoint": str(path)}}
    )  # fmt: skip
    run = train_supernet(config, tmp_path / "run")
    assert run.supernet.metadata["transfer"]["loaded"] == 472
    assert run.supernet.metadata["transfer"]["initialised_tensors"].keys() == CLASSIFIER
    path.unlink()  # a resumed run does not read it again, and keeps the report
    again = train_supernet(config, tmp_path / "run")
    assert again.supernet.metadata["transfer"] == run.supernet.metadata["transfer"]
    with pytest.raises(FileNotFoundError, match=r"init_from\.checkpoint"):
        train_supernet(config, tmp_path / "fresh")


def test_init_from_takes_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one of checkpoint, artifact_id, supernet_id"):
        TrainConfig.model_validate({"init_from": {"artifact_id": 1, "supernet_id": 2}})
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig.model_validate({"init_from": {}})

"""Bundles: ONNX (checker-clean, dynamic batch, ORT parity), safetensors weights, arch.json with sha256s."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nas.bundle_eval import preprocess
from nas.cost import macs, params
from nas.export import (
    BundleIntegrityError,
    ParityError,
    check_parity,
    export_bundle,
    export_onnx,
    load_bundle,
)
from nas.spaces import list_spaces
from nas.supernet import OFAMobileNetV3, build_supernet
from nas.train import BNCalibration, calibrated_subnet


def randomized_supernet(name: str, seed: int = 0) -> OFAMobileNetV3:
    """A supernet whose BN statistics and affine parameters are random, so outputs are O(1)."""
    torch.manual_seed(seed)
    net = build_supernet(name)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        for name_, p in net.named_parameters():
            if name_.endswith("_matrix"):
                p.add_(0.1 * torch.randn_like(p))
    return net.eval()


@pytest.mark.parametrize("name", list_spaces())
def test_min_and_max_bundles_match_pytorch_in_onnxruntime(name: str, tmp_path: Path) -> None:
    net = randomized_supernet(name)
    for label, arch in (("min", net.space.min_arch()), ("max", net.space.max_arch())):
        path = export_bundle(net, arch, tmp_path / label, calibration="none")
        model = onnx.load(str(path / "model.onnx"))
        onnx.checker.check_model(model, full_check=True)
        assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17

        r, c = arch["r"], net.backbone.in_channels
        x = torch.randn(3, c, r, r)  # batch 3: the batch axis is dynamic
        with torch.no_grad():
            expected = net.extract(arch).eval()(x).numpy()
        session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        (actual,) = session.run(["logits"], {"input": x.numpy()})
        assert np.abs(expected).max() > 1e-2, "outputs must be non-trivial for the check to mean anything"
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)

        bundle = load_bundle(path)
        with torch.no_grad():
            torch.testing.assert_close(bundle.module(x), torch.from_numpy(expected), rtol=0, atol=1e-6)


def test_arch_json_records_everything_and_zip_round_trips(tmp_path: Path) -> None:
    net = randomized_supernet("ofa_mbv3_d234_e346_k357_32px")
    arch = net.space.sample(3)
    names = [f"class{i}" for i in range(10)]
    path = export_bundle(
        net, arch, tmp_path / "b.zip", calibration="none", mean=[0.286], std=[0.353], class_names=names, archive=True
    )
    assert zipfile.is_zipfile(path)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["arch.json", "model.onnx", "weights.safetensors"]
        meta = json.loads(zf.read("arch.json"))
    canon = net.space.canonical(arch)
    assert meta["space"] == "ofa_mbv3_d234_e346_k357_32px"
    assert meta["arch"] == canon
    assert meta["key"] == net.space.key(arch)
    assert meta["input"] == {
        "name": "input", "layout": "NCHW", "channels": 1, "size": canon["r"], "pixel_scale": 1 / 255,
        "mean": [0.286], "std": [0.353], "resize": "bilinear",
    }  # fmt: skip
    assert meta["bn_calibration"] is None, "an export that skipped recalibration says so"
    assert meta["num_classes"] == 10 and meta["class_names"] == names
    assert meta["macs"] == macs(net.space, arch) and meta["params"] == params(net.space, arch)
    assert set(meta["sha256"]) == {"model.onnx", "weights.safetensors"}
    assert meta["ofa_net_config"] == net.extract(arch).net_config()

    bundle = load_bundle(path)
    x = torch.randn(2, 1, canon["r"], canon["r"])
    with torch.no_grad():
        torch.testing.assert_close(bundle.module(x), net.extract(arch).eval()(x), rtol=0, atol=0)


def test_bundle_for_other_channels_and_classes(tmp_path: Path) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px", in_channels=3, num_classes=7).eval()
    bundle = load_bundle(export_bundle(net, net.space.max_arch(), tmp_path / "b", calibration="none"))
    assert bundle.module(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize("victim", ["weights.safetensors", "model.onnx"])
def test_modified_file_is_refused_naming_it(tmp_path: Path, victim: str) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    path = export_bundle(net, net.space.min_arch(), tmp_path / "b", calibration="none")
    data = bytearray((path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=victim):
        load_bundle(path)


def test_modified_file_in_zip_is_refused(tmp_path: Path) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    path = export_bundle(net, net.space.min_arch(), tmp_path / "b.zip", archive=True, calibration="none")
    with zipfile.ZipFile(path) as zf:
        contents = {n: zf.read(n) for n in zf.namelist()}
    contents["weights.safetensors"] = contents["weights.safetensors"][:-8] + b"\0" * 8
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in contents.items():
            zf.writestr(n, d)
    with pytest.raises(BundleIntegrityError, match=r"weights\.safetensors"):
        load_bundle(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    path = export_bundle(net, net.space.min_arch(), tmp_path / "b", calibration="none")
    (path / "model.onnx").unlink()
    with pytest.raises(BundleIntegrityError, match=r"model\.onnx"):
        load_bundle(path)
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "nowhere")


def test_parity_check_fails_loudly_on_mismatch(tmp_path: Path) -> None:
    net = randomized_supernet("ofa_mbv3_d234_e346_k357_32px")
    sub = net.extract(net.space.max_arch()).eval()
    onnx_path = export_onnx(sub, tmp_path / "m.onnx", (1, 32, 32))
    assert check_parity(sub, onnx_path, (1, 32, 32)) < 1e-4
    with torch.no_grad():
        sub.classifier.linear.bias.add_(0.5)
    with pytest.raises(ParityError, match="disagree"):
        check_parity(sub, onnx_path, (1, 32, 32))


def test_bad_export_arguments(tmp_path: Path) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    arch = net.space.min_arch()
    with pytest.raises(ValueError, match="mean"):
        export_bundle(net, arch, tmp_path / "a", mean=[0.1, 0.2, 0.3], calibration="none")
    with pytest.raises(ValueError, match="class_names"):
        export_bundle(net, arch, tmp_path / "b", class_names=["a"], calibration="none")
    with pytest.raises(ValueError, match="opset"):
        export_bundle(net, arch, tmp_path / "c", opset=13, calibration="none")
    with pytest.raises(ValueError, match="arch"):
        export_bundle(net, {**arch, "r": 99}, tmp_path / "d", calibration="none")
    assert not any((tmp_path / n).exists() for n in "abcd"), "nothing is written for bad input"


def test_export_requires_a_calibration_named_by_the_caller(tmp_path: Path) -> None:
    net = build_supernet("ofa_mbv3_d234_e346_k357_32px")
    with pytest.raises(TypeError, match="calibration"):
        export_bundle(net, net.space.min_arch(), tmp_path / "a")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="calibration"):
        export_bundle(net, net.space.min_arch(), tmp_path / "b", calibration="None")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="records no training data"):
        export_bundle(net, net.space.min_arch(), tmp_path / "c", calibration="training_data")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_export_recalibrates_batch_norm_for_the_subnet(tmp_path: Path) -> None:
    """The supernet's stored BN statistics belong to no subnet: the bundle carries the recalibrated ones."""
    net = randomized_supernet("ofa_mbv3_d234_e346_k357_32px")
    arch = net.space.sample(5)
    calibration = BNCalibration.of_dataset("demo", images=300)
    path = export_bundle(net, arch, tmp_path / "b", calibration=calibration)
    meta = json.loads((path / "arch.json").read_text())
    assert meta["bn_calibration"] == {
        "dataset": "demo", "data_dir": None, "split": "train", "val_fraction": 0.1, "split_seed": 0, "images": 300,
        "seed": 0, "batch_size": 200, "augment": {"random_crop_pad": 2, "hflip": False}, "resize": "bilinear",
    }  # fmt: skip
    assert meta["input"]["mean"] == pytest.approx(list(calibration.data.mean))

    x = calibration.inputs(arch["r"], 8)  # real images: the data the statistics were calibrated on
    with torch.no_grad():
        recalibrated = calibrated_subnet(net, arch, calibration)(x).numpy()
        stored = net.extract(arch).eval()(x).numpy()
    assert np.abs(recalibrated - stored).max() > 0.1, "the test needs BN statistics that recalibration changes"
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    (actual,) = session.run(["logits"], {"input": x.numpy()})
    np.testing.assert_allclose(actual, recalibrated, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        np.testing.assert_allclose(load_bundle(path).module(x).numpy(), recalibrated, rtol=0, atol=1e-6)


def test_bundle_preprocessing_is_torchs_bilinear_resize_and_normalisation() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28, 1), dtype=np.uint8)
    meta = {"channels": 1, "size": 32, "pixel_scale": 1 / 255, "mean": [0.3], "std": [0.2], "resize": "bilinear"}
    for size in (8, 24, 28, 32):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate((x - 0.3) / 0.2, size=(size, size), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(preprocess(images, {**meta, "size": size}), x.numpy(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="nearest"):
        preprocess(images, {**meta, "resize": "nearest"})
    with pytest.raises(ValueError, match="3"):
        preprocess(images, {**meta, "channels": 3})

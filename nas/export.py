"""Subnet bundles: ONNX + safetensors + arch.json, with an ONNX Runtime parity check.

A bundle is a directory (or a zip of the same files)::

    model.onnx            opset >= 17, dynamic batch axis, input "input" (N, C, R, R), output "logits"
    weights.safetensors   the static subnet's state dict (OFA's subnet key names)
    arch.json             space, arch, input size and preprocessing, classes, MACs, params, how
                          its BatchNorm statistics were calibrated, how it was fine-tuned (if it
                          was), the parity result and the sha256 of every other file

A subnet leaves the supernet only with its BatchNorm statistics recalibrated for it (OFA's
protocol, `nas.train.BNCalibration`): the supernet's stored statistics belong to no subnet, and a
subnet exported with them is far less accurate than the one that was evaluated. `export_bundle`
takes the calibration as a required argument; skipping it must be asked for by name
(``calibration="none"``, e.g. for a checkpoint whose data the caller does not have).

`load_bundle` verifies every hash before reading anything and rebuilds the PyTorch module from
arch.json and the safetensors file, without unpickling.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from nas.cost import macs, params
from nas.supernet.ofa_mbv3 import OFAMobileNetV3
from nas.supernet.static import MobileNetV3, build_subnet
from nas.train.evaluate import BNCalibration

Calibration = BNCalibration | Literal["training_data", "none"]
"""How `export_bundle` calibrates BatchNorm: explicit data, the supernet's own training data, or not at all."""

BUNDLE_FORMAT = 2
ONNX_FILE, WEIGHTS_FILE, META_FILE = "model.onnx", "weights.safetensors", "arch.json"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEFAULT_OPSET = 17
PIXEL_SCALE = 1 / 255
RESIZE = "bilinear"
"""How an image reaches the network: ``x * pixel_scale``, normalised ``(x - mean) / std`` per channel,
resized to ``size`` x ``size`` by bilinear interpolation with half-pixel centres and no antialiasing
(torch's ``interpolate(..., mode="bilinear", align_corners=False)``), laid out NCHW."""


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the same input."""


class BundleIntegrityError(ValueError):
    """A bundle file is missing or does not match the sha256 recorded in arch.json."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle.

    Attributes:
        module: the static subnet, in eval mode.
        meta: the contents of arch.json.
        path: where it was loaded from.
    """

    module: MobileNetV3
    meta: dict[str, Any]
    path: Path


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def export_onnx(
    module: nn.Module, path: str | Path, input_shape: tuple[int, int, int], opset: int = DEFAULT_OPSET
) -> Path:
    """Export a module to ONNX with a dynamic batch axis and check it with ``onnx.checker``.

    Args:
        module: the network (exported in eval mode; its mode is restored afterwards).
        path: the .onnx file to write.
        input_shape: (channels, height, width) of one input.
        opset: ONNX opset, at least 17.

    Raises:
        ValueError: opset below 17.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (torch.zeros(1, *input_shape),),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    finally:
        module.train(was_training)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def check_parity(
    module: nn.Module,
    onnx_model: str | Path | bytes,
    input_shape: tuple[int, int, int],
    *,
    inputs: torch.Tensor | None = None,
    batch_size: int = 2,
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> float:
    """Run PyTorch and ONNX Runtime (CPU) on the same input and compare the outputs.

    Args:
        module: the PyTorch network.
        onnx_model: its ONNX export (a path or the bytes).
        input_shape: (channels, height, width) of one input.
        inputs: the input batch; default `batch_size` standard-normal images drawn from `seed`. Give
            real images for a network whose BatchNorm statistics were calibrated on real data:
            far from that distribution its activations grow and rounding differences with them.
        batch_size: images of the default input.
        seed: seed of the default input.
        atol: absolute tolerance.
        rtol: tolerance relative to the PyTorch output.

    Returns:
        The largest absolute difference.

    Raises:
        ParityError: some output differs by more than ``atol + rtol * |torch output|``.
    """
    import onnxruntime as ort

    x = inputs
    if x is None:
        x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch_size, *input_shape), dtype=np.float32))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            expected = module(x).numpy()
    finally:
        module.train(was_training)
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    diff = np.abs(actual - expected)
    worst = float(diff.max())
    if actual.shape != expected.shape or not np.all(diff <= atol + rtol * np.abs(expected)):
        raise ParityError(
            f"ONNX Runtime and PyTorch disagree: max |diff| = {worst:.3g} "
            f"(allowed {atol:g} + {rtol:g}*|y|), shapes {actual.shape} vs {expected.shape}"
        )
    return worst


def export_bundle(
    supernet: OFAMobileNetV3,
    arch: Mapping[str, Any],
    path: str | Path,
    *,
    calibration: Calibration,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    archive: bool = False,
    opset: int = DEFAULT_OPSET,
    subnet: MobileNetV3 | None = None,
    fine_tuning: Mapping[str, Any] | None = None,
) -> Path:
    """Write a subnet of `supernet` as a bundle (a directory, or a zip if `archive`).

    The subnet's BatchNorm statistics are recalibrated first (see the module docstring). The ONNX
    file is checked against PyTorch with ONNX Runtime before anything is written to `path`; a
    mismatch raises `ParityError`.

    Args:
        supernet: the trained supernet.
        arch: the subnet.
        path: target directory, or zip file when `archive` is true.
        calibration: a `BNCalibration`; ``"training_data"`` for the supernet's own training split
            (`BNCalibration.of_training_data`, the protocol its evaluations used); or ``"none"`` to
            export the supernet's stored statistics unchanged (recorded as such in arch.json).
        mean: per-channel input mean the model expects (recorded, not baked in; default: the
            calibration data's).
        std: per-channel input std (default: the calibration data's).
        class_names: names of the classes, in output order (default: the ones the supernet was
            trained with, ``metadata["classes"]``, if it records them).
        archive: write a zip instead of a directory.
        opset: ONNX opset (>= 17).
        subnet: the static subnet `arch` with weights of its own (e.g. fine-tuned,
            `nas.train.finetune`) to export instead of the supernet's; it is calibrated like an
            extracted one (on a copy: the given module is not modified).
        fine_tuning: how `subnet` was trained (JSON-ready), recorded as arch.json's ``fine_tuning``.

    Returns:
        The path written.

    Raises:
        ValueError: invalid arch, an unknown calibration, or mean/std/class_names of the wrong length.
        ParityError: the exported ONNX model does not reproduce PyTorch.
    """
    if calibration == "training_data":
        calibration = BNCalibration.of_training_data(supernet)
    elif not (calibration == "none" or isinstance(calibration, BNCalibration)):
        raise ValueError(f"calibration must be a BNCalibration, 'training_data' or 'none', got {calibration!r}")
    if isinstance(calibration, BNCalibration):
        mean = calibration.data.mean if mean is None else mean
        std = calibration.data.std if std is None else std
    class_names = supernet.metadata.get("classes") if class_names is None else class_names
    space = supernet.space
    b = space.backbone
    canon = space.canonical(arch)
    for label, values, n in (
        ("mean", mean, b.in_channels),
        ("std", std, b.in_channels),
        ("class_names", class_names, b.num_classes),
    ):
        if values is not None and len(values) != n:
            raise ValueError(f"{label} must have {n} entries, got {len(values)}")
    module = (supernet.extract(canon) if subnet is None else copy.deepcopy(subnet)).eval()
    if isinstance(calibration, BNCalibration):
        calibration.apply(module, canon["r"])
    input_shape = (b.in_channels, canon["r"], canon["r"])
    with tempfile.TemporaryDirectory() as tmp:
        onnx_bytes = export_onnx(module, Path(tmp) / ONNX_FILE, input_shape, opset).read_bytes()
    real = calibration.inputs(canon["r"]) if isinstance(calibration, BNCalibration) else None
    parity = check_parity(module, onnx_bytes, input_shape, inputs=real)

    from safetensors.torch import save

    weights = save({k: v.contiguous() for k, v in module.state_dict().items()})
    files = {ONNX_FILE: onnx_bytes, WEIGHTS_FILE: weights}
    meta = {
        "format": BUNDLE_FORMAT,
        "space": space.name,
        "arch": canon,
        "key": space.key(canon),
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "channels": b.in_channels,
            "size": canon["r"],
            "pixel_scale": PIXEL_SCALE,
            "mean": None if mean is None else [float(v) for v in mean],
            "std": None if std is None else [float(v) for v in std],
            "resize": RESIZE,
        },
        "bn_calibration": calibration.record() if isinstance(calibration, BNCalibration) else None,
        "fine_tuning": None if fine_tuning is None else dict(fine_tuning),
        "output": {"name": OUTPUT_NAME},
        "num_classes": b.num_classes,
        "class_names": None if class_names is None else list(class_names),
        "macs": macs(space, canon),
        "params": params(space, canon),
        "onnx_opset": opset,
        "parity_max_abs_diff": parity,
        "ofa_net_config": module.net_config(),
        "sha256": {name: sha256_bytes(data) for name, data in files.items()},
    }
    files[META_FILE] = json.dumps(meta, indent=2).encode()
    return _write(files, Path(path), archive)


def _write(files: Mapping[str, bytes], path: Path, archive: bool) -> Path:
    if archive:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (path / name).write_bytes(data)
    return path


def read_bundle_files(path: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read arch.json and every file it lists from a bundle directory or zip, verifying the sha256s.

    Raises:
        BundleIntegrityError: a file is missing or its sha256 does not match, naming the file.
        FileNotFoundError: no bundle at `path`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no bundle at {path}")
    if path.is_dir():

        def read(name: str) -> bytes:
            file = path / name
            if not file.is_file():
                raise BundleIntegrityError(f"bundle {path} lacks {name}")
            return file.read_bytes()
    else:
        with zipfile.ZipFile(path) as zf:
            contents = {info.filename: zf.read(info) for info in zf.infolist()}

        def read(name: str) -> bytes:
            if name not in contents:
                raise BundleIntegrityError(f"bundle {path} lacks {name}")
            return contents[name]

    meta = json.loads(read(META_FILE))
    files = {}
    for name, digest in meta["sha256"].items():
        data = read(name)
        if sha256_bytes(data) != digest:
            raise BundleIntegrityError(
                f"{name} in bundle {path} does not match its sha256 in {META_FILE} "
                "(corrupt or modified); refusing to load"
            )
        files[name] = data
    return meta, files


def load_bundle(path: str | Path) -> Bundle:
    """Verify a bundle and rebuild its PyTorch module (eval mode) from arch.json and the weights.

    Raises:
        BundleIntegrityError: a file is missing or modified, naming it.
        KeyError: the bundle's space is not registered here.
    """
    from safetensors.torch import load

    from nas.spaces import get_space

    meta, files = read_bundle_files(path)
    space = get_space(meta["space"], in_channels=meta["input"]["channels"], num_classes=meta["num_classes"])
    module = build_subnet(space.backbone, space.canonical(meta["arch"]))
    module.load_state_dict(load(files[WEIGHTS_FILE]))
    return Bundle(module=module.eval(), meta=meta, path=Path(path))


__all__ = [
    "Bundle",
    "BundleIntegrityError",
    "Calibration",
    "ParityError",
    "check_parity",
    "export_bundle",
    "export_onnx",
    "load_bundle",
    "read_bundle_files",
]

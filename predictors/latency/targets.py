"""Latency targets: a device plus a runtime plus the settings that change its numbers.

A `Target` is plain data (JSON-ready through `to_dict` / `from_dict`), so a remote agent or a
Ray task can receive it. Built in:

- ``cpu-ort``: ONNX Runtime's CPU provider, full graph optimisation, 1 intra-op and 1 inter-op
  thread, sequential execution (reproducible on shared machines);
- ``cuda-ort``: ONNX Runtime's CUDA provider;
- ``cuda-torch``: PyTorch on CUDA, timed with CUDA events after a synchronise.

Register your own with `register_target`, e.g. a Raspberry Pi measured remotely::

    register_target(Target("rpi4-ort", device="arm", runtime="onnxruntime", threads=4, remote=True))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nas.registry import Registry

RUNTIMES = ("onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16")
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class Target:
    """One device + runtime + settings whose latency is measured or predicted.

    Attributes:
        name: unique name, e.g. "cpu-ort" or "rpi4-ort".
        device: "cpu", "cuda", or any label of a CPU-like remote device ("arm", "pixel7", ...).
        runtime: "onnxruntime" or "torch" ("torch" needs device "cuda").
        threads: intra-op threads (ONNX Runtime) for CPU targets.
        inter_op_threads: inter-op threads (ONNX Runtime).
        batch_size: batch size of every measurement.
        precision: "fp32" (or "fp16" for CUDA targets).
        provider_options: extra ONNX Runtime provider options (e.g. {"device_id": "0"}).
        remote: measured by `hwnas agent` on another machine, not in this process.
    """

    name: str
    device: str = "cpu"
    runtime: str = "onnxruntime"
    threads: int = 1
    inter_op_threads: int = 1
    batch_size: int = 1
    precision: str = "fp32"
    provider_options: dict[str, str] = field(default_factory=dict)
    remote: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("target name must not be empty")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"target {self.name!r}: runtime {self.runtime!r} is not supported; allowed: {RUNTIMES}")
        if self.runtime == "torch" and self.device != "cuda":
            raise ValueError(f"target {self.name!r}: runtime 'torch' is measured on device 'cuda' only")
        if self.precision not in PRECISIONS:
            raise ValueError(f"target {self.name!r}: precision {self.precision!r} not allowed; allowed: {PRECISIONS}")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError(f"target {self.name!r}: precision 'fp16' needs device 'cuda'")
        for attr in ("threads", "inter_op_threads", "batch_size"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"target {self.name!r}: {attr} must be an integer >= 1, got {value!r}")

    @property
    def provider(self) -> str | None:
        """The ONNX Runtime execution provider (None for the torch runtime)."""
        if self.runtime != "onnxruntime":
            return None
        return _PROVIDERS.get(self.device, _PROVIDERS["cpu"])

    def availability(self) -> tuple[bool, str]:
        """Whether this process can measure the target, and if not, why (one line).

        Imports onnxruntime or torch to look; nothing is measured.
        """
        if self.remote:
            return False, f"target {self.name!r} is measured remotely by `hwnas agent --target {self.name}`"
        if self.runtime == "torch":
            import torch

            if not torch.cuda.is_available():
                return False, f"target {self.name!r} needs a CUDA GPU; torch sees none"
            return True, ""
        import onnxruntime as ort

        providers = ort.get_available_providers()
        if self.provider not in providers:
            return False, f"target {self.name!r} needs ONNX Runtime's {self.provider}; available: {providers}"
        return True, ""

    @property
    def available(self) -> bool:
        """Whether this process can measure the target (see `availability` for the reason)."""
        return self.availability()[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Target:
        """Inverse of `to_dict`.

        Raises:
            ValueError: unknown fields or invalid values, naming them.
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown target field(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**{**data, "provider_options": dict(data.get("provider_options") or {})})


_TARGETS: Registry[Target] = Registry("latency target")


def register_target(target: Target) -> Target:
    """Register a target under its name.

    Raises:
        ValueError: the name is taken.
    """
    return _TARGETS.register(target.name)(target)


def get_target(name: str) -> Target:
    """The registered target called `name`.

    Raises:
        KeyError: unknown name; the message lists the registered targets.
    """
    return _TARGETS.get(name)


list_targets = _TARGETS.names
"""Names of the registered targets, sorted."""


register_target(Target("cpu-ort", device="cpu", runtime="onnxruntime", threads=1, inter_op_threads=1))
register_target(Target("cuda-ort", device="cuda", runtime="onnxruntime"))
register_target(Target("cuda-torch", device="cuda", runtime="torch"))

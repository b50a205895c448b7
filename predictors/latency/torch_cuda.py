"""Latency of a PyTorch module on a CUDA GPU, timed with CUDA events (torch is imported lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from predictors.latency.measure import Measurement, MeasureSettings, environment, time_runs
from predictors.latency.targets import Target

if TYPE_CHECKING:
    from torch import nn


def measure_torch_cuda(
    module: nn.Module, input_shape: tuple[int, ...], target: Target, settings: MeasureSettings | None = None
) -> Measurement:
    """Measure `module` in eval mode under ``torch.no_grad`` on the GPU.

    Each run is bracketed by CUDA events and followed by a synchronise, so the time is the GPU's.

    Args:
        module: the network (moved to the GPU; fp16 when the target says so).
        input_shape: one input's shape without the batch dim.
        target: a torch target on device "cuda".
        settings: warm-up, runs and noise handling.

    Raises:
        ValueError: not a torch CUDA target.
        RuntimeError: no CUDA GPU.
    """
    import torch

    settings = settings or MeasureSettings()
    if target.runtime != "torch" or target.device != "cuda":
        raise ValueError(f"target {target.name!r} is not a torch CUDA target")
    ok, reason = target.availability()
    if not ok:
        raise RuntimeError(reason)
    dtype = torch.float16 if target.precision == "fp16" else torch.float32
    device = torch.device("cuda", int(target.provider_options.get("device_id", 0)))
    net = module.to(device=device, dtype=dtype).eval()
    shape = [target.batch_size, *input_shape]
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
    begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]

    def run_ms() -> float:
        with torch.no_grad():
            begin.record()
            net(x)
            end.record()
        torch.cuda.synchronize(device)
        return float(begin.elapsed_time(end))

    env = environment(target, torch.__version__)
    env["gpu"] = torch.cuda.get_device_name(device)
    return time_runs(run_ms, settings, target=target, input_shape=shape, env=env)

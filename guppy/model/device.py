"""Which device a model runs on, for every command that runs one (train, eval, chat): asked for by name,
or `auto`, which takes the fastest there is."""

from __future__ import annotations

import torch

from guppy.errors import GuppyError


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str) -> str:
    """auto: an NVIDIA GPU, then Apple Silicon's GPU (mps), then the CPU; a device asked for must exist."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise GuppyError("--device cuda: no CUDA GPU is visible here; use --device cpu (or auto)")
    if device == "mps" and not mps_available():
        raise GuppyError("--device mps: no Apple Silicon GPU (MPS) is available here; use --device cpu (or auto)")
    return device

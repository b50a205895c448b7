"""Uploaded pretrained checkpoints (OFA's ImageNet supernets, or others of a registered space)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class CheckpointOut(BaseModel):
    """A pretrained checkpoint, checked and stored; start a training from it with ``config.init_from.artifact_id``."""

    id: int = Field(description="its artefact id", examples=[12])
    space: str = Field(description="the registered space it fits", examples=["ofa_mbv3_d234_e346_k357_w1.0"])
    in_channels: int = Field(description="its first conv's input channels", examples=[3])
    num_classes: int = Field(description="its classifier's classes", examples=[1000])
    tensors: int = Field(description="tensors in its state dict", examples=[475])
    sha256: str = Field(description="sha256 of the stored safetensors file")
    size: int = Field(description="bytes stored")
    created_at: dt.datetime

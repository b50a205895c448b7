"""Uploaded datasets."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

UploadFormat = Literal["npz", "imagefolder", "idx"]
"""What a dataset upload may be (`nas.data.archive.DatasetFormat`)."""

MAX_CLASSES_SHOWN = 100
"""A dataset's `classes` lists at most this many names (`num_classes` counts them all)."""


class DatasetOut(BaseModel):
    """An uploaded dataset, validated and stored; train on it with ``dataset_id`` in ``POST /v1/supernets``."""

    id: int = Field(examples=[4])
    name: str = Field(examples=["my-parts"])
    format: str = Field(description="what was uploaded: npz, imagefolder or idx", examples=["imagefolder"])
    upload_sha256: str = Field(description="sha256 of the uploaded file")
    upload_size: int = Field(description="bytes uploaded")
    sha256: str = Field(description="sha256 of the stored .npz the workers train on")
    train_images: int = Field(examples=[1497])
    test_images: int = Field(examples=[300])
    image_size: int = Field(description="height (= width) in pixels", examples=[8])
    channels: int = Field(description="1 (grey) or 3 (RGB)", examples=[1])
    num_classes: int = Field(examples=[10])
    classes: list[str] = Field(description=f"class names, label order (the first {MAX_CLASSES_SHOWN})")
    hflip: bool = Field(description="whether horizontal flips are used as augmentation")
    created_at: dt.datetime

"""Supernets: the training request and the trained supernet."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import MAX_ID, BoundedJSON, Strict
from workers.kinds.train import CpusPerWorker, Device, Workers

TRAIN_EXAMPLE: dict[str, Any] = {
    "name": "fashion-32px",
    "config": {
        "space": "ofa_mbv3_d234_e346_k357_32px",
        "dataset": "fashion_mnist",
        "strategy": "sandwich",
        "epochs": 10,
    },
}


class SupernetCreate(Strict):
    """Train a supernet: a label, a training configuration (`nas.train.TrainConfig`'s fields) and its workers.

    The workers are not part of the configuration: a run may resume on other hardware.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [TRAIN_EXAMPLE]})

    name: str = Field("", max_length=200, description="a label for the supernet")
    config: BoundedJSON[dict[str, Any]] = Field(
        description="space, dataset, strategy, epochs, batch_size, lr, seed, ... (see nas.train.TrainConfig); "
        "data_dir only inside the service's data roots",
        examples=[TRAIN_EXAMPLE["config"]],
    )
    dataset_id: int | None = Field(
        None,
        ge=1,
        le=MAX_ID,
        description="train on an uploaded dataset of yours (POST /v1/datasets) instead of config.dataset",
    )
    workers: Workers = 1
    device: Device = "cpu"
    cpus_per_worker: CpusPerWorker = 1.0


class SupernetOut(BaseModel):
    """A trained supernet."""

    id: int = Field(examples=[3])
    name: str
    space: str = Field(examples=["ofa_mbv3_d234_e346_k357_32px"])
    dataset: str = Field(
        description="a built-in dataset's name, or dataset:<id> for an upload", examples=["fashion_mnist"]
    )
    dataset_id: int | None = Field(None, description="the uploaded dataset it was trained on")
    strategy: str = Field(examples=["sandwich"])
    config: dict[str, Any]
    metrics: dict[str, Any] | None = Field(None, examples=[{"epochs": 10, "final_loss": 0.41}])
    checkpoint: dict[str, int] | None = Field(None, description="checkpoint file name -> artefact id")
    job_id: int | None = Field(None, description="the training job")
    created_at: dt.datetime

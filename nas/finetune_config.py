"""The options of fine-tuning one subnet (`nas.train.finetune`), importable without torch.

The service validates a fine-tuning request with this model in its API process, where torch is
not loaded; `nas.train.finetune.finetune_subnet` takes it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_FINETUNE_EPOCHS = 1_000
"""The most epochs one fine-tuning may ask for."""


class FinetuneConfig(BaseModel):
    """How one subnet is fine-tuned: from the supernet's weights, with distillation from its largest subnet.

    Numbers must be finite. Fields left as None take a default that depends on the supernet
    (see `nas.train.finetune.finetune_subnet`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(3, ge=1, le=MAX_FINETUNE_EPOCHS, description="epochs over the supernet's training split")
    lr: float = Field(0.01, gt=0, le=10.0, description="peak learning rate (cosine decay to 0, no warm-up)")
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="default: the batch size the space preset trains supernets with"
    )
    kd_ratio: float = Field(1.0, ge=0, le=100.0, description="weight of the distillation loss (0: labels only)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-5, ge=0, le=1.0, description="not applied to BN parameters and biases")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    train_images: int | None = Field(None, ge=1, description="train on only this many images (quick runs)")
    seed: int = Field(0, ge=0, le=2**32 - 1)

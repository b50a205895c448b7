"""Training configuration: one pydantic model, with defaults that depend on the space preset."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "ofa_mbv3_d234_e346_k357_32px": {"batch_size": 128, "lr": 0.1, "weight_decay": 5e-5, "bn_recal_images": 2000},
    # The bundled digits: ~1,150 training images, so small batches for enough steps; lr 0.1 left every
    # subnet of the 32 px preset ~4 points lower after 12 epochs than 0.03 did (NOTES.md, issue 20).
    "ofa_mbv3_d234_e346_k357_demo": {"batch_size": 32, "lr": 0.03, "weight_decay": 5e-5, "bn_recal_images": 500},
    "ofa_mbv3_d234_e346_k357_w1.0": {"batch_size": 256, "lr": 0.1, "weight_decay": 3e-5, "bn_recal_images": 2000},
    "ofa_mbv3_d234_e346_k357_w1.2": {"batch_size": 256, "lr": 0.1, "weight_decay": 3e-5, "bn_recal_images": 2000},
}
FALLBACK_DEFAULTS: dict[str, Any] = {"batch_size": 128, "lr": 0.1, "weight_decay": 3e-5, "bn_recal_images": 2000}
MAX_EPOCHS = 10_000
"""The most epochs a run (or a phase) may ask for."""
MAX_LR = 10.0
"""The largest peak learning rate accepted (SGD diverges long before)."""


SANDWICH_OPTIONS = ("largest_first_epochs", "largest_at_top_resolution", "distilled_label_weight")
"""`TrainConfig` fields that only the sandwich strategy has (the others refuse them)."""


class PhaseConfig(BaseModel):
    """Override of one progressive-shrinking phase."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(description="phase name: full, kernel, depth_1, depth_2, expand_1 or expand_2")
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    lr: float = Field(gt=0, le=MAX_LR, description="peak learning rate of the phase")


MAX_INIT_ID = 2**63 - 1
"""The largest id `InitFrom` accepts (SQL's BIGINT)."""


class InitFrom(BaseModel):
    """Pretrained weights to start from (`nas.supernet.transfer`): exactly one of the three sources.

    A checkpoint of the same space and width; the first conv is adapted to the data's channels and a
    classifier for other classes is freshly initialised. `artifact_id` and `supernet_id` are the
    service's: its worker turns them into a local `checkpoint` file before training.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str | None = Field(
        None, min_length=1, max_length=4096, description="a checkpoint file (OFA .pth or safetensors) on the server"
    )
    artifact_id: int | None = Field(None, ge=1, le=MAX_INIT_ID, description="a checkpoint you uploaded")
    supernet_id: int | None = Field(None, ge=1, le=MAX_INIT_ID, description="a supernet of yours, same space")

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        given = [name for name in ("checkpoint", "artifact_id", "supernet_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of checkpoint, artifact_id, supernet_id (got {len(given)})")
        return self


class TrainConfig(BaseModel):
    """Everything that determines a supernet training run (and so its checkpoints).

    Fields left as None take the preset's default (`PRESET_DEFAULTS`). Numbers must be finite
    (``Infinity`` would otherwise be stored as null and trained with the default).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    space: str = Field("ofa_mbv3_d234_e346_k357_32px", description="search-space preset")
    dataset: str = Field("demo", description="registered dataset name (see nas.data.list_datasets)")
    data_dir: str | None = Field(None, description="where the dataset lives, if not in the default places")
    strategy: str = Field("sandwich", description="sandwich or progressive_shrinking")
    epochs: int = Field(
        10, ge=1, le=MAX_EPOCHS, description="total epochs (progressive shrinking splits them over its phases)"
    )
    batch_size: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0, le=MAX_LR, description="peak learning rate (after warm-up)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0, description="not applied to BN parameters and biases")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up at the start of training")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    num_random: int = Field(2, ge=0, description="random subnets per step besides the largest (and the smallest)")
    kd_ratio: float = Field(1.0, ge=0, description="weight of the distillation loss")
    distilled_label_weight: float = Field(
        0.0,
        ge=0,
        le=100.0,
        description="sandwich: weight of the labels' cross-entropy (no smoothing) for the subnets that distil from "
        "the largest (0: distillation only, as BigNAS)",
    )
    resolutions: list[int] | None = Field(None, description="restrict the preset's resolutions")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of the train split held out for validation")
    train_images: int | None = Field(None, ge=1, description="train on only this many images (quick runs)")
    bn_recal_images: int | None = Field(None, ge=1, description="training images used to recalibrate BN")
    phases: list[PhaseConfig] | None = Field(None, description="progressive shrinking: explicit phases")
    epoch_validation: bool = Field(
        True,
        description="after each epoch, the largest and smallest subnets' BN-recalibrated top-1 on the validation "
        "split, in the history and the progress (training curves); CPU training only",
    )
    zero_init_residual_bn: bool = Field(
        False,
        description="start the last BN of every block with a shortcut at scale 0, so each block begins as the "
        "identity (BigNAS); fresh runs only, not with init_from",
    )
    largest_at_top_resolution: bool = Field(
        False,
        description="sandwich: the largest subnet (the teacher) always trains at the largest resolution, the others "
        "at the step's sampled one (BigNAS, AttentiveNAS)",
    )
    largest_first_epochs: int = Field(
        0,
        ge=0,
        le=MAX_EPOCHS,
        description="sandwich: train the largest subnet alone for this many of the epochs before the sandwich "
        "phase (OFA trains the full network first)",
    )
    arch: dict[str, Any] | None = Field(None, description="standalone: the one subnet to train from scratch")
    init_from: InitFrom | None = Field(None, description="start from pretrained weights instead of a random init")
    seed: int = 0

    @model_validator(mode="after")
    def _check_arch(self) -> TrainConfig:
        if (self.strategy == "standalone") != (self.arch is not None):
            raise ValueError("arch is required by the standalone strategy and used by no other")
        return self

    @model_validator(mode="after")
    def _check_recipe(self) -> TrainConfig:
        for option in SANDWICH_OPTIONS:
            if getattr(self, option) and self.strategy != "sandwich":
                raise ValueError(f"{option} is a sandwich option")
        if self.zero_init_residual_bn and self.init_from is not None:
            raise ValueError("zero_init_residual_bn initialises a fresh network; init_from loads one")
        if self.largest_first_epochs >= self.epochs:
            raise ValueError(
                f"largest_first_epochs ({self.largest_first_epochs}) must leave sandwich epochs (epochs {self.epochs})"
            )
        return self

    @model_validator(mode="after")
    def _fill_preset_defaults(self) -> TrainConfig:
        defaults = PRESET_DEFAULTS.get(self.space, FALLBACK_DEFAULTS)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        return self

    # Typed accessors for the fields the validator always fills.
    @property
    def batch(self) -> int:
        """The batch size in effect."""
        assert self.batch_size is not None
        return self.batch_size

    @property
    def peak_lr(self) -> float:
        """The peak learning rate in effect."""
        assert self.lr is not None
        return self.lr

    @property
    def decay(self) -> float:
        """The weight decay in effect."""
        assert self.weight_decay is not None
        return self.weight_decay

    @property
    def recal_images(self) -> int:
        """The number of BN-recalibration images in effect."""
        assert self.bn_recal_images is not None
        return self.bn_recal_images

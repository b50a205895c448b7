"""Supernet training: strategies, the loop, checkpoints, BN recalibration and evaluation."""

from nas.train.checkpoint import CheckpointError
from nas.train.config import PhaseConfig, TrainConfig
from nas.train.evaluate import BNCalibration, EvalResult, calibrated_subnet, evaluate, recalibrate_bn
from nas.train.loop import DataParallel, ProgressEvent, TrainingDivergedError, TrainRun, load_run, train_supernet
from nas.train.strategies import Phase, Strategy, get_strategy, list_strategies

__all__ = [
    "BNCalibration",
    "CheckpointError",
    "DataParallel",
    "EvalResult",
    "Phase",
    "PhaseConfig",
    "ProgressEvent",
    "Strategy",
    "TrainConfig",
    "TrainRun",
    "TrainingDivergedError",
    "calibrated_subnet",
    "evaluate",
    "get_strategy",
    "list_strategies",
    "load_run",
    "recalibrate_bn",
    "train_supernet",
]

"""The typed statement of a search on a trained supernet: the one model from the REST request to the algorithm.

Objective names: ``accuracy`` (maximised by default), ``macs`` and ``params`` (minimised), and
``latency:<target>`` (minimised, ms) for each of the search's targets; with exactly one target,
``latency`` means ``latency:<that target>``. Validation resolves that alias and fills the default
directions, so a validated `SearchSpec` names every objective in full and gives each a direction;
validating its ``model_dump(mode="json")`` again gives the same spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from predictors.latency import MeasureSettings

Direction = Literal["min", "max"]
FIXED_OBJECTIVES: dict[str, Direction] = {"accuracy": "max", "macs": "min", "params": "min"}
"""The objectives every search may use, with their default directions."""
LATENCY = "latency"
LATENCY_PREFIX = f"{LATENCY}:"


def _checked_bound(bound: float | tuple[float | None, float | None]) -> float | tuple[float | None, float | None]:
    if isinstance(bound, tuple):
        low, high = bound
        if (low is None and high is None) or (low is not None and high is not None and low > high):
            raise _invalid(f"[low, high] needs low <= high and one of them set, got {list(bound)}")
    return bound


Bound = Annotated[FiniteFloat | tuple[FiniteFloat | None, FiniteFloat | None], AfterValidator(_checked_bound)]
"""A finite number bounds an objective's bad side; ``[low, high]`` both (either may be null)."""


def latency_objective(target: str) -> str:
    """The objective name of the latency on `target`."""
    return LATENCY_PREFIX + target


def latency_target(objective: str) -> str | None:
    """The target of a ``latency:<target>`` objective (None for any other objective)."""
    return objective.removeprefix(LATENCY_PREFIX) if objective.startswith(LATENCY_PREFIX) else None


class SearchGoal(BaseModel):
    """What a search optimises, under which constraints, on which targets, and its algorithm and budgets.

    The fields are declared in the order they are checked: the targets first (they decide the
    latency objectives), then the objectives, then the directions and constraints on them.
    """

    model_config = ConfigDict(extra="forbid")

    targets: list[str] = Field(default_factory=list, max_length=8, description="latency targets (see /v1/targets)")
    objectives: list[str] = Field(
        min_length=1, max_length=8, description="accuracy, macs, params, latency:<target> (or latency with one target)"
    )
    directions: dict[str, Direction] = Field(
        default_factory=dict,
        validate_default=True,
        description="objective -> min or max (default: max for accuracy, min otherwise)",
    )
    constraints: dict[str, Bound] = Field(
        default_factory=dict,
        description="objective -> bound: a number bounds the bad side, [low, high] both (either may be null)",
    )
    algorithm: str = Field("evolution", description="a registered search algorithm (nas.search.list_algorithms)")
    # strict: "5", 5.0 or true for a count is a client's mistake to name, not a value to convert
    budget: int = Field(1000, ge=1, le=10_000_000, strict=True, description="objective evaluations (subnets scored)")
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True)
    predictor_samples: int = Field(
        100, ge=10, le=100_000, strict=True,
        description="subnets evaluated for real (validation split) to fit the accuracy model",
    )  # fmt: skip
    export_limit: int = Field(
        20, ge=0, le=1000, strict=True,
        description="front members validated on their exported bundle and made downloadable",
    )  # fmt: skip

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[str]) -> list[str]:
        return _unique(targets)

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, objectives: list[str], info: ValidationInfo) -> list[str]:
        return _unique([_objective(name, info.data.get("targets", [])) for name in objectives])

    @field_validator("directions")
    @classmethod
    def _full_directions(cls, directions: dict[str, Direction], info: ValidationInfo) -> dict[str, Direction]:
        given = _on_objectives(directions, info)
        return {o: given.get(o, FIXED_OBJECTIVES.get(o, "min")) for o in info.data.get("objectives", [])}

    @field_validator("constraints")
    @classmethod
    def _constraints_on_objectives(cls, constraints: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _on_objectives(constraints, info)

    @field_validator("algorithm")
    @classmethod
    def _registered_algorithm(cls, algorithm: str) -> str:
        from nas.search import list_algorithms

        if algorithm not in list_algorithms():
            raise _invalid(f"unknown algorithm {algorithm!r}; registered: {list_algorithms()}")
        return algorithm

    @property
    def latency_targets(self) -> list[str]:
        """The targets whose latency is an objective, in objective order."""
        return [t for t in map(latency_target, self.objectives) if t is not None]


def _measure_settings(fields: dict[str, Any]) -> dict[str, Any]:
    from predictors.latency import MeasureSettings

    return MeasureSettings.from_dict(fields).to_dict()


MeasureSettingsDict = Annotated[dict[str, Any], AfterValidator(_measure_settings)]
"""`predictors.latency.MeasureSettings` fields in a request, checked and completed with the defaults."""


class SearchSpec(SearchGoal):
    """A search's goal and how latencies are measured (for tables built on the way and for validation)."""

    measure: MeasureSettingsDict = Field(
        default_factory=dict,
        validate_default=True,
        description="predictors.latency.MeasureSettings fields (default: its defaults)",
    )

    @property
    def measure_settings(self) -> MeasureSettings:
        """`measure` as the settings object the measuring functions take."""
        from predictors.latency import MeasureSettings

        return MeasureSettings.from_dict(self.measure)


def _unique(values: list[str]) -> list[str]:
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate names {duplicates}")
    return values


def _objective(name: str, targets: list[str]) -> str:
    """`name` with the ``latency`` alias resolved; an unknown objective is an error saying what is allowed."""
    if name == LATENCY and len(targets) == 1:
        return latency_objective(targets[0])
    allowed = [*FIXED_OBJECTIVES, *map(latency_objective, targets)]
    if name not in allowed:
        raise _invalid(
            f"unknown objective {name!r}; allowed with these targets: {allowed} "
            f"(accuracy, macs, params or latency:<one of {targets}>)"
        )
    return name


def _on_objectives(by_name: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """`by_name` with its keys resolved; each must be one of the (valid) objectives."""
    targets: list[str] = info.data.get("targets", [])
    resolved = {_objective(name, targets): value for name, value in by_name.items()}
    objectives = info.data.get("objectives")
    extra = sorted(set(resolved) - set(objectives or []))
    if objectives is not None and extra:
        raise _invalid(f"{extra} are not among the objectives {objectives}")
    return resolved


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is `message` as it is (no "Value error, " prefix)."""
    return PydanticCustomError("value_error", message)

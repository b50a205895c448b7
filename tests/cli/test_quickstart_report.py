"""What the quickstart shows besides the front: agreement figures, the quality lines, the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cli.commands.quickstart import quality_lines
from cli.plot import axis_label, dominated, plot_pareto
from cli.quickstart import LATENCY, QuickstartResult, front_agreement


def point(key: str, pred: tuple[float, float], valid: tuple[float, float]) -> dict[str, Any]:
    return {
        "arch_key": key,
        "arch": {"r": 28},
        "predicted": {"accuracy": pred[0], LATENCY: pred[1]},
        "validated": {"accuracy": valid[0], LATENCY: valid[1]},
    }


FRONT = [
    point("a", (0.90, 0.30), (0.91, 0.31)),
    point("b", (0.93, 0.40), (0.92, 0.42)),
    point("c", (0.95, 0.50), (0.96, 0.45)),
    point("d", (0.97, 0.60), (0.94, 0.65)),  # dominated by c once validated
]


def test_front_agreement_rank_correlation_and_errors() -> None:
    a = front_agreement(FRONT)
    assert a["n"] == 4 and a["best_accuracy"] == 0.96
    assert a["spearman_rho"] == pytest.approx(0.8)  # ranks of accuracy 1,2,4,3 against latency 1,2,3,4
    assert a["mean_abs_error"] == pytest.approx((0.01 + 0.01 + 0.01 + 0.03) / 4)
    flat = front_agreement([point(k, (0.9, x), (0.9, x)) for k, x in (("a", 1.0), ("b", 2.0), ("c", 3.0))])
    assert flat["spearman_rho"] is None and flat["mean_abs_error"] == 0.0
    assert front_agreement([])["n"] == 0


def test_dominated_members_are_found_in_both_directions() -> None:
    validated = [(0.31, 0.91), (0.42, 0.92), (0.45, 0.96), (0.65, 0.94)]
    assert dominated(validated, x_max=False, y_max=True) == [False, False, False, True]
    assert dominated(validated, x_max=True, y_max=True) == [True, True, False, False]


def test_plot_marks_the_best_and_labels_units(tmp_path: Path) -> None:
    path = plot_pareto(FRONT, LATENCY, "accuracy", tmp_path / "front.png", highlight="c")
    with Image.open(path) as image:
        assert image.size[0] > 400 and image.size[1] > 300
    assert axis_label(LATENCY) == "latency on cpu-ort (ms)" and axis_label("accuracy") == "accuracy (top-1)"
    with pytest.raises(ValueError, match="no Pareto point has both"):
        plot_pareto(FRONT, "macs", "accuracy", tmp_path / "none.png")


def test_quality_lines_name_every_figure(tmp_path: Path) -> None:
    result = QuickstartResult(
        front=FRONT, best_bundle=tmp_path, plot=tmp_path, home=tmp_path,
        table_quality={"n": 20, "mape": 8.2, "within_5": 0.4, "within_10": 0.75, "kendall_tau": 0.81},
        predictor={"kind": "gbm", "samples": 100, "held_out": {"rmse": 0.0061, "kendall_tau": 0.52, "n": 20}},
        agreement=front_agreement(FRONT),
        phases={"train the supernet": 95.0, "measure the latency table": 70.0, "search": 200.0,
                "search: predictor": 120.0},
    )  # fmt: skip
    lines = quality_lines(result)
    assert lines[0] == (
        "accuracy predictor (gbm): Kendall tau 0.52, RMSE 0.61 points on 20 held-out subnets evaluated for real "
        "(fitted on 80, then refitted on all 100 for the search)"
    )
    assert "75% within ±10%, MAPE 8.2%, Kendall tau 0.81" in lines[1]
    assert "Spearman rho of accuracy vs measured latency 0.80" in lines[2] and "1.50 points" in lines[2]
    assert lines[3].startswith("time: train the supernet 1m 35s,") and lines[3].endswith("total 6m 05s")


def test_an_undefined_kendall_tau_reads_n_a(tmp_path: Path) -> None:
    result = QuickstartResult(
        front=FRONT, best_bundle=tmp_path, plot=tmp_path, home=tmp_path, table_quality=None,
        predictor={"kind": "gbm", "samples": 10, "held_out": {"rmse": 0.01, "kendall_tau": None, "n": 2}},
        agreement=front_agreement(FRONT), phases={"search": 1.0},
    )  # fmt: skip
    assert quality_lines(result)[0].startswith("accuracy predictor (gbm): Kendall tau n/a, RMSE 1.00 points")


def test_drifted_latency_measurements_are_named(tmp_path: Path) -> None:
    """A front measured while the machine was busy says so, with the reference subnet's change."""
    steady = {
        "relative_change": 0.02,
        "first_relative_change": 0.30,
        "threshold": 0.15,
        "flagged": False,
        "remeasured": True,
        "reference": "a",
        "reference_before_ms": 0.1,
        "reference_after_ms": 0.102,
    }
    suspect = {**steady, "relative_change": -0.36, "first_relative_change": 0.67, "flagged": True}
    quiet = {**steady, "remeasured": False, "first_relative_change": 0.02}
    lines = {}
    for name, drift in {"steady": steady, "suspect": suspect, "quiet": quiet}.items():
        result = QuickstartResult(
            front=FRONT, best_bundle=tmp_path, plot=tmp_path, home=tmp_path, table_quality=None, predictor=None,
            agreement=front_agreement(FRONT), phases={"search": 1.0}, drift={"cpu-ort": drift},
        )  # fmt: skip
        lines[name] = [line for line in quality_lines(result) if "drifted" in line]
    assert lines["quiet"] == []
    assert lines["steady"] == [
        "latency on cpu-ort drifted while the front was measured (+30%), so it was measured again: "
        "steady the second time (+2%)"
    ]
    assert lines["suspect"] == [
        "latency on cpu-ort drifted while the front was measured (+67%, then -36% measured again; threshold 15%): "
        "the measured latencies above are suspect; rerun on an idle machine"
    ]

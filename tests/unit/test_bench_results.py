"""scaler_bench's table logic: ratios, goals and the verdict, from figures given by hand (no processes)."""

from __future__ import annotations

from scaler.bench.results import Report, render, row
from scaler.bench.workloads import Settings

Figures = dict[str, dict[str, list[float]]]


def report(rows: list[str], figures: Figures, missing: dict[str, str] | None = None) -> Report:
    result = Report(Settings(rounds=3), ["scaler", "ppe", "ray"], missing or {}, rows)
    for row_id, by_peer in figures.items():
        for peer_id, runs in by_peer.items():
            result.cell(row_id, peer_id).runs.extend(runs)
    return result


def test_the_ratio_is_scalers_median_over_the_process_pools() -> None:
    result = report(["noop"], {"noop": {"scaler": [9.0, 20.0, 10.0], "ppe": [5.0, 5.0, 4.0]}})
    assert result.ratio(row("noop")) == (2.0, "ppe")
    assert result.verdict(row("noop")) == (True, "")


def test_a_time_row_meets_its_goal_below_the_bound() -> None:
    result = report(["latency_p50"], {"latency_p50": {"scaler": [0.5], "ppe": [0.2]}})
    assert result.verdict(row("latency_p50")) == (False, "")
    result = report(["latency_p50"], {"latency_p50": {"scaler": [0.4], "ppe": [0.2]}})
    assert result.verdict(row("latency_p50")) == (True, "")


def test_cancel_must_meet_its_bound_in_every_round_not_only_the_median() -> None:
    result = report(["cancel"], {"cancel": {"scaler": [0.05, 0.06, 0.2], "ppe": [2.0]}})
    assert result.verdict(row("cancel")) == (False, "")


def test_map_must_not_fall_below_the_submit_loop() -> None:
    figures = {"noop": {"scaler": [30.0], "ppe": [10.0]}, "map": {"scaler": [25.0], "ppe": [10.0]}}
    assert report(["noop", "map"], figures).verdict(row("map")) == (False, "")
    assert report(["map"], {"map": figures["map"]}).verdict(row("map")) == (True, "")


def test_the_graph_goal_names_a_missing_ray_instead_of_failing() -> None:
    result = report(["graph"], {"graph": {"scaler": [3000.0]}}, {"ray": "Ray not installed (pip install ray)"})
    assert result.verdict(row("graph")) == (None, "Ray not installed")
    assert "Ray not installed" in render(result, {"scaler": "scaler", "ppe": "ProcessPoolExecutor", "ray": "Ray"})


def test_the_json_has_one_entry_per_row_with_every_figure() -> None:
    result = report(["noop"], {"noop": {"scaler": [2.0], "ppe": [1.0]}})
    data = result.to_json()
    assert [entry["id"] for entry in data["rows"]] == ["noop"]
    assert data["rows"][0]["values"]["scaler"] == {"median": 2.0, "runs": [2.0], "error": None}
    assert data["rows"][0]["passed"] is True

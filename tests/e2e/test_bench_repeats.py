"""`bench/run --repeat N`: how a scenario's runs become its row (no servers: the choice is plain code).

The row must be one run's numbers (so its ratios agree with its microseconds), the run whose multiple of the
floor is the median, with every run's key numbers beside it; a single run stays exactly as it was.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

from convene_e2e import REPO_ROOT

_loader = importlib.machinery.SourceFileLoader("bench_run", str(REPO_ROOT / "bench" / "run"))
_spec = importlib.util.spec_from_loader("bench_run", _loader)
bench_run = importlib.util.module_from_spec(_spec)
_loader.exec_module(bench_run)


def run(us: float, floor: float, janus: float | None) -> dict:
    return {
        "scenario": "a: test",
        "convene_cpu_us_per_pkt": us,
        "floor_cpu_us_per_pkt": floor,
        "convene_multiple_of_floor": us / floor,
        "convene_multiple_of_janus_pps": janus,
        "loss_pct": 0.0,
    }


def test_one_run_is_the_row_unchanged():
    r = run(10.0, 5.0, 3.0)
    assert bench_run.median_run([r]) is r


def test_the_row_is_the_run_with_the_median_multiple_of_the_floor():
    runs = [run(12.0, 5.0, 3.5), run(9.0, 5.0, 2.5), run(10.0, 4.0, 4.0)]
    row = bench_run.median_run(runs)
    # x floor: 2.4, 1.8, 2.5 -> the median is 2.4, the first run: its microseconds come with it.
    assert row["convene_cpu_us_per_pkt"] == 12.0
    assert row["convene_multiple_of_floor"] == 2.4
    assert row["convene_multiple_of_floor_median"] == 2.4
    assert row["convene_multiple_of_floor_range"] == [1.8, 2.5]
    # The Janus ratio's median is its own (3.5), whichever run the row is.
    assert row["convene_multiple_of_janus_pps_median"] == 3.5
    assert row["convene_multiple_of_janus_pps_range"] == [2.5, 4.0]
    assert [x["convene_cpu_us_per_pkt"] for x in row["repeats"]] == [12.0, 9.0, 10.0]
    # The runs themselves are left alone.
    assert "repeats" not in runs[0]


def test_an_even_count_takes_the_lower_middle_run_and_the_mean_median():
    runs = [run(8.0, 4.0, None), run(12.0, 4.0, None)]
    row = bench_run.median_run(runs)
    assert row["convene_multiple_of_floor"] == 2.0
    assert row["convene_multiple_of_floor_median"] == 2.5
    # Without Janus there is no Janus ratio to summarise.
    assert row["convene_multiple_of_janus_pps_median"] is None
    assert row["convene_multiple_of_janus_pps_range"] is None


def test_the_report_lists_every_run():
    row = bench_run.median_run([run(12.0, 5.0, 3.5), run(9.0, 5.0, 2.5), run(10.0, 4.0, 4.0)])
    text = "\n".join(bench_run.repeats_markdown([row]))
    assert "ran 3 times" in text
    assert "| a: test | 2.40, 1.80, 2.50 | 2.40 |" in text


def test_a_row_states_its_multiple_of_the_framed_floor_too():
    """The floor fed the generator's frames is like-for-like input (and, sending a receiver's copies of a
    frame in one segmented send, the cheaper floor): its multiple sits beside the plain floor's."""
    convene = {
        "server": {"cpu_us_per_pkt": 10.0, "pps_per_core": 100_000.0},
        "loss_pct": 0.0,
        "latency_ms": {"p50": 1.0, "p99": 2.0},
        "forwarded_pps": 4000.0,
        "attendees": 101,
        "connections_connected": 101,
        "connections_expected": 101,
        "jitter_ms_mean": 0.5,
        "keyframe_wait_ms": {"p99": 100.0},
        "keyframe_never": 0,
    }
    row = bench_run.summarize(
        "a", "test", convene, {"floor_cpu_us_per_pkt": 5.0}, None, "not measured",
        ff={"floor_cpu_us_per_pkt": 8.0}, fr={"floor_cpu_us_per_pkt": 4.0},
    )
    assert row["convene_multiple_of_floor"] == 2.0
    assert row["convene_multiple_of_floor_with_feedback"] == 1.25
    assert row["floor_framed_cpu_us_per_pkt"] == 4.0
    assert row["convene_multiple_of_framed_floor"] == 2.5
    # Without a framed run (audio-only scenarios): no multiple, not a wrong one.
    row = bench_run.summarize("c", "test", convene, {"floor_cpu_us_per_pkt": 5.0}, None, "not measured")
    assert row["convene_multiple_of_framed_floor"] is None

"""hydralab.stats (bootstrap CIs, Wilson intervals, pass@k) and the analysis tables built on it:
``latency_table(ci=True)``, ``RunTables.compare`` / ``compare_batches``, ``pass_at_k_table``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from needs import PANDAS

from hydralab.latency import latency_stats
from hydralab.stats import (
    bootstrap_ci,
    bootstrap_diff_ci,
    pass_at_k,
    pass_hat_k,
    percentile_ci,
    percentile_diff_ci,
    rate_ci,
    rate_diff_ci,
    summarize,
)

needs_pandas = pytest.mark.skipif(not PANDAS, reason="needs pandas (the 'notebooks' extra)")
BATCH = Path(__file__).parent / "fixtures" / "batch_emulator"


# ---------------------------------------------------------------------------- bootstrap
def test_median_ci_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(12345)
    covered = 0
    for rep in range(200):
        x = rng.normal(500.0, 100.0, size=40)  # true median 500
        lo, hi = percentile_ci(x, 50, n_boot=1000, seed=rep)
        covered += lo <= 500.0 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def test_mean_ci_coverage_and_width() -> None:
    rng = np.random.default_rng(7)
    hits, widths = 0, []
    for rep in range(200):
        x = rng.normal(0.0, 1.0, size=50)
        lo, hi = bootstrap_ci(x, np.mean, n_boot=1000, seed=rep, vectorized=True)
        hits += lo <= 0.0 <= hi
        widths.append(hi - lo)
    assert 0.88 <= hits / 200 <= 0.99
    # ≈ 2 · 1.96 / √50 = 0.554 (the bootstrap is a little narrower at n = 50)
    assert np.mean(widths) == pytest.approx(0.554, rel=0.08)


def test_deterministic_per_seed() -> None:
    x = np.random.default_rng(1).lognormal(6.5, 0.3, size=30)
    assert percentile_ci(x, 90, seed=3) == percentile_ci(x, 90, seed=3)
    assert percentile_ci(x, 90, seed=3) != percentile_ci(x, 90, seed=4)
    assert bootstrap_ci(list(x), np.median, seed=5) == bootstrap_ci(x, np.median, seed=5)
    assert percentile_diff_ci(x, x + 1, 50, seed=2) == percentile_diff_ci(x, x + 1, 50, seed=2)


def test_vectorized_and_plain_statistics_agree() -> None:
    x = np.random.default_rng(2).normal(size=25)
    plain = bootstrap_ci(x, np.median, seed=9)
    assert bootstrap_ci(x, np.median, seed=9, vectorized=True) == pytest.approx(plain)
    assert percentile_ci(x, 50, seed=9) == pytest.approx(plain)
    assert bootstrap_ci((v for v in x), np.median, seed=9) == pytest.approx(plain)  # generator


def test_interval_brackets_the_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(3)
    small, large = rng.normal(size=20), rng.normal(size=2000)
    lo_s, hi_s = percentile_ci(small, 50)
    lo_l, hi_l = percentile_ci(large, 50)
    assert lo_s <= np.median(small) <= hi_s
    assert lo_l <= np.median(large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3


def test_level_widens_the_interval() -> None:
    x = np.random.default_rng(4).normal(size=60)
    lo80, hi80 = percentile_ci(x, 50, level=0.8)
    lo99, hi99 = percentile_ci(x, 50, level=0.99)
    assert lo99 <= lo80 < hi80 <= hi99


def test_fewer_than_two_values_give_nan() -> None:
    for v in ([], [512.0]):
        assert all(math.isnan(b) for b in percentile_ci(v, 50))
        assert all(math.isnan(b) for b in bootstrap_ci(v, np.mean))
        assert all(math.isnan(b) for b in percentile_diff_ci(v, [1.0, 2.0, 3.0], 50))
    assert percentile_ci([5.0, 5.0, 5.0], 50) == (5.0, 5.0)


def test_invalid_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        percentile_ci([1.0, float("nan"), 3.0], 50)
    with pytest.raises(ValueError, match="one-dimensional"):
        percentile_ci(np.ones((3, 3)), 50)
    with pytest.raises(ValueError, match="numbers"):
        percentile_ci(["a", "b"], 50)
    with pytest.raises(ValueError, match="numbers"):
        summarize("123")
    with pytest.raises(ValueError, match="level"):
        percentile_ci([1.0, 2.0], 50, level=95)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], np.mean, n_boot=0)
    with pytest.raises(ValueError, match="percentile"):
        percentile_ci([1.0, 2.0], 0.9 * 1000)


def test_diff_ci_separates_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(800.0, 120.0, size=60)
    b = rng.normal(900.0, 120.0, size=60)
    lo, hi = percentile_diff_ci(a, b, 50)
    assert 0.0 < lo < 100.0 < hi
    lo, hi = percentile_diff_ci(a, a, 50)  # the sides draw independently: a real interval
    assert lo < 0.0 < hi
    lo, hi = bootstrap_diff_ci(a, b, np.mean, vectorized=True)
    assert lo < float(b.mean() - a.mean()) < hi


def test_summarize_matches_latency_stats_and_percentile_ci() -> None:
    x = np.random.default_rng(6).lognormal(6.6, 0.25, size=35)
    s = summarize(x, seed=11)
    st = latency_stats(x)
    assert s["n"] == st["n"] == 35
    assert s["mean"] == pytest.approx(st["mean_ms"])
    for p in (50, 90, 95):
        assert s[f"p{p}"] == pytest.approx(st[f"p{p}_ms"])  # numpy's linear percentile
        assert (s[f"p{p}_lo"], s[f"p{p}_hi"]) == percentile_ci(x, p, seed=11)
        assert s[f"p{p}_lo"] <= s[f"p{p}_hi"]
    assert (s["mean_lo"], s["mean_hi"]) == pytest.approx(bootstrap_ci(x, np.mean, seed=11))
    empty = summarize([])
    assert empty["n"] == 0 and math.isnan(empty["p50"]) and math.isnan(empty["p50_lo"])
    one = summarize([700.0])
    assert one["p90"] == 700.0 and math.isnan(one["p90_hi"])


# ---------------------------------------------------------------------------- rates
def test_wilson_known_values() -> None:
    assert rate_ci(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-4)
    assert rate_ci(0, 6) == pytest.approx((0.0, 0.3903), abs=5e-4)
    assert rate_ci(6, 6) == pytest.approx((0.6097, 1.0), abs=5e-4)
    assert rate_ci(50, 100, level=0.9) == pytest.approx((0.4190, 0.5810), abs=5e-4)
    assert rate_ci(8.0, 10.0) == rate_ci(8, 10)  # a sum of 1.0 scores
    assert all(math.isnan(v) for v in rate_ci(0, 0))


def test_wilson_invalid() -> None:
    with pytest.raises(ValueError, match="exceed"):
        rate_ci(11, 10)
    with pytest.raises(ValueError, match="whole"):
        rate_ci(2.5, 10)
    with pytest.raises(ValueError, match="non-negative"):
        rate_ci(-1, 10)
    with pytest.raises(ValueError, match="level"):
        rate_ci(1, 10, level=1.0)


def test_rate_difference() -> None:
    lo, hi = rate_diff_ci(8, 10, 8, 10)
    assert lo < 0.0 < hi and lo == pytest.approx(-hi)
    # Newcombe (1998), method 10, example: 56/70 vs 48/80 → difference 0.2, [0.0524, 0.3339]
    assert rate_diff_ci(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=5e-4)
    assert rate_diff_ci(0, 30, 30, 30)[0] > 0.7
    assert all(math.isnan(v) for v in rate_diff_ci(0, 0, 3, 4))


# ---------------------------------------------------------------------------- pass@k
def test_pass_at_k_known_values() -> None:
    assert pass_at_k(3, 1, 1) == pytest.approx(1 / 3)
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert pass_at_k(3, 1, 3) == 1.0
    assert pass_at_k(3, 0, 3) == 0.0
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 2, 0) == 1.0
    for n in range(1, 7):  # pass@1 is the plain success rate
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n)


def test_pass_hat_k_known_values() -> None:
    assert pass_hat_k(3, 2, 1) == pytest.approx(2 / 3)
    assert pass_hat_k(3, 2, 2) == pytest.approx(1 / 3)  # C(2,2)/C(3,2)
    assert pass_hat_k(3, 2, 3) == 0.0
    assert pass_hat_k(3, 3, 3) == 1.0
    assert pass_hat_k(5, 4, 2) == pytest.approx(0.6)  # C(4,2)/C(5,2) = 6/10


def test_pass_at_k_invalid() -> None:
    with pytest.raises(ValueError, match="exceed"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="exceed"):
        pass_hat_k(3, 4, 1)
    with pytest.raises(ValueError, match="non-negative"):
        pass_at_k(3, -1, 1)


# ---------------------------------------------------------------------------- analysis tables
def _tables(latencies: dict[str, np.ndarray], completion: list[float]) -> Any:
    """A RunTables-like batch built in memory: assistant turns by type, one session each."""
    import pandas as pd

    from hydralab.analysis import RunTables

    rows = [
        {"speaker": "assistant", "type": t, "model_response_ms": float(v)}
        for t, vals in latencies.items()
        for v in vals
    ]
    rows.append({"speaker": "assistant", "type": "greeting", "model_response_ms": np.nan})
    rows.append({"speaker": "user", "type": "plain", "model_response_ms": np.nan})
    sessions = pd.DataFrame(
        {
            "record_id": [f"R{i % 5}" for i in range(len(completion))],
            "trial": [i // 5 + 1 for i in range(len(completion))],
            "task_completion": completion,
        }
    )
    return RunTables(
        turns=pd.DataFrame(rows),
        tool_calls=pd.DataFrame(),
        sessions=sessions,
        run_dirs=[],
        root=Path("."),
    )


@needs_pandas
def test_compare_detects_a_100_ms_shift() -> None:
    rng = np.random.default_rng(8)
    plain, tool = rng.normal(700, 50, 60), rng.normal(1000, 60, 40)
    a = _tables({"plain": plain, "tool": tool}, [1.0] * 8 + [0.0] * 2)
    b = _tables({"plain": plain + 100, "tool": tool + 100}, [1.0] * 9 + [0.0])
    cmp = a.compare(b)
    assert list(cmp.columns) == [
        "n_a", "n_b", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "diff", "diff_lo", "diff_hi",
    ]  # fmt: skip
    assert list(cmp.index) == [
        (s, g) for s in ("p50_ms", "p90_ms") for g in ("plain", "tool", "all")
    ] + [("task_completion", "all")]
    for s in ("p50_ms", "p90_ms"):
        for g in ("plain", "tool"):
            r = cmp.loc[(s, g)]
            assert r["diff"] == pytest.approx(100.0)  # a shift moves every percentile
            assert 0.0 < r["diff_lo"] < 100.0 < r["diff_hi"], (s, g)
            assert r["a_lo"] <= r["a"] <= r["a_hi"]
    assert cmp.loc[("p50_ms", "plain"), "n_a"] == 60
    assert cmp.loc[("p50_ms", "all"), "n_b"] == 100  # no greeting, no caller turn
    tc = cmp.loc[("task_completion", "all")]
    assert (tc["n_a"], tc["a"], tc["b"]) == (10, 0.8, 0.9)
    assert (tc["a_lo"], tc["a_hi"]) == pytest.approx(rate_ci(8, 10))
    assert tc["diff"] == pytest.approx(0.1)
    assert tc["diff_lo"] < 0.0 < tc["diff_hi"]  # 8/10 vs 9/10 is no evidence


@needs_pandas
def test_compare_identical_batches_includes_zero_and_is_deterministic() -> None:
    from hydralab.analysis import compare_batches

    rng = np.random.default_rng(9)
    a = _tables({"plain": rng.normal(700, 80, 30), "tool": rng.normal(1000, 120, 20)}, [1.0] * 5)
    cmp = compare_batches(a, a, labels=("before", "after"))
    assert "n_before" in cmp.columns and "after_hi" in cmp.columns
    lat = cmp.drop(index="task_completion", level="statistic")
    assert (lat["diff"] == 0.0).all()
    assert ((lat["diff_lo"] < 0.0) & (lat["diff_hi"] > 0.0)).all()
    assert cmp.equals(compare_batches(a, a, labels=("before", "after")))
    assert not cmp.equals(compare_batches(a, a, labels=("before", "after"), seed=1))
    tc = cmp.loc[("task_completion", "all")]
    assert tc["diff"] == 0.0 and tc["diff_lo"] < 0.0 < tc["diff_hi"]


@needs_pandas
def test_compare_groups_by_a_session_column_and_handles_one_sided_groups() -> None:
    rng = np.random.default_rng(10)
    a = _tables({"plain": rng.normal(700, 80, 10), "tool": rng.normal(900, 80, 10)}, [1.0] * 10)
    b = _tables({"plain": rng.normal(700, 80, 10)}, [1.0] * 5 + [0.0] * 5)
    cmp = a.compare(b, percentiles=(50,))
    tool = cmp.loc[("p50_ms", "tool")]
    assert tool["n_b"] == 0 and math.isnan(tool["b"]) and math.isnan(tool["diff_lo"])
    a.turns["record_id"] = "R0"
    b.turns["record_id"] = "R0"
    by_rec = a.compare(b, by="record_id", percentiles=(50,))
    assert [g for s, g in by_rec.index if s == "task_completion"] == [
        "R0", "R1", "R2", "R3", "R4", "all",
    ]  # fmt: skip


@needs_pandas
def test_compare_errors() -> None:
    a = _tables({"plain": np.arange(5.0)}, [1.0])
    with pytest.raises(KeyError, match="no_such_ms"):
        a.compare(a, metric="no_such_ms")
    with pytest.raises(ValueError, match="distinct"):
        a.compare(a, labels=("x", "x"))
    with pytest.raises(ValueError, match="diff"):
        a.compare(a, labels=("diff", "x"))


@needs_pandas
def test_compare_batches_reads_directories() -> None:
    from hydralab.analysis import compare_batches, latency_table, load_batch

    cmp = compare_batches(BATCH, load_batch(BATCH), n_boot=200)
    tab = latency_table(BATCH)
    assert cmp.loc[("p50_ms", "tool"), "a"] == pytest.approx(tab.loc["tool", "p50_ms"])
    assert cmp.loc[("p90_ms", "all"), "n_b"] == tab.loc["all", "n"] == 20
    assert cmp.loc[("task_completion", "all"), "a"] == 1.0


@needs_pandas
def test_latency_table_ci_columns_and_unchanged_default() -> None:
    from hydralab.analysis import latency_table, load_batch

    batch = load_batch(BATCH)
    plain = latency_table(batch)
    assert list(plain.columns) == ["n", "p50_ms", "p90_ms", "p95_ms", "max_ms", "mean_ms"]
    tab = latency_table(batch, ci=True, seed=4)
    assert list(tab.columns) == [
        "n", "p50_ms", "p50_lo", "p50_hi", "p90_ms", "p90_lo", "p90_hi",
        "p95_ms", "p95_lo", "p95_hi", "max_ms", "mean_ms",
    ]  # fmt: skip
    assert tab[plain.columns].equals(plain)
    tool = batch.assistant[batch.assistant["type"] == "tool"]["model_response_ms"].to_numpy()
    for p in (50, 90, 95):
        lo, hi = percentile_ci(tool, p, seed=4)
        assert (tab.loc["tool", f"p{p}_lo"], tab.loc["tool", f"p{p}_hi"]) == (lo, hi)
        assert (tab[f"p{p}_lo"] <= tab[f"p{p}_hi"]).all()
    assert latency_table(batch, ci=True, seed=4).equals(tab)


@needs_pandas
def test_pass_at_k_table() -> None:
    import pandas as pd

    from hydralab.analysis import pass_at_k_table

    sessions = pd.DataFrame(
        {
            "record_id": ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D"] * 2,
            "trial": [1, 2, 3] * 3 + [1, 2],
            "task_completion": [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, np.nan],
        }
    )
    tab = pass_at_k_table(sessions)
    assert list(tab.index) == ["A", "B", "C", "D", "mean"]
    assert list(tab.columns) == [
        "n", "c", "pass@1", "pass^1", "pass@2", "pass^2", "pass@3", "pass^3",
    ]  # fmt: skip
    assert (tab.loc["A", "n"], tab.loc["A", "c"]) == (3, 1)
    assert tab.loc["A", "pass@1"] == pytest.approx(1 / 3)
    assert tab.loc["A", "pass@2"] == pytest.approx(2 / 3)
    assert tab.loc["A", "pass@3"] == 1.0
    assert tab.loc["A", "pass^2"] == 0.0
    assert tab.loc["B", "pass^3"] == 1.0
    assert tab.loc["C", "pass@3"] == 0.0
    # D: the unscored trial is left out (n = 1), so k = 2, 3 cannot be estimated
    assert tab.loc["D", "n"] == 1 and tab.loc["D", "pass@1"] == 1.0
    assert math.isnan(tab.loc["D", "pass@2"])
    assert tab.loc["mean", "pass@1"] == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    assert tab.loc["mean", "pass@3"] == pytest.approx((1 + 1 + 0) / 3)  # records with n ≥ 3
    assert (tab.loc["mean", "n"], tab.loc["mean", "c"]) == (10, 5)
    assert list(pass_at_k_table(sessions, (3, 1)).columns)[2:4] == ["pass@1", "pass^1"]


@needs_pandas
def test_pass_at_k_table_errors_and_fixture() -> None:
    import pandas as pd

    from hydralab.analysis import load_batch, pass_at_k_table

    twice = pd.DataFrame({"record_id": ["A", "A"], "trial": [1, 1], "task_completion": [1.0, 0]})
    with pytest.raises(ValueError, match="more than once"):
        pass_at_k_table(twice)
    with pytest.raises(ValueError, match="positive"):
        pass_at_k_table(twice, k_values=(0,))
    with pytest.raises(KeyError, match="task_completion"):
        pass_at_k_table(pd.DataFrame({"record_id": ["A"]}))
    tab = pass_at_k_table(load_batch(BATCH), k_values=(1, 2))  # 3 records × 2 trials
    assert list(tab["n"]) == [2, 2, 2, 6]
    assert (tab["pass@2"] == 1.0).all()

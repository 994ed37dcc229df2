"""Uncertainty for the headline numbers: bootstrap CIs, Wilson intervals, pass@k (numpy only).

A p50 from 20 turns or a completion rate from 6 calls is an estimate; these functions say how
far it could move:

- :func:`bootstrap_ci` — percentile bootstrap CI of any statistic; :func:`percentile_ci` for a
  latency percentile (numpy's default *linear* percentile, as :func:`hydralab.latency.latency_stats`
  and so ``run.json`` use); :func:`summarize` — n, mean, p50/p90/p95, each with its CI.
- :func:`bootstrap_diff_ci` / :func:`percentile_diff_ci` — CI of ``stat(b) - stat(a)`` for two
  batches, each side resampled independently.
- :func:`rate_ci` — Wilson score interval of a rate (task completion);
  :func:`rate_diff_ci` — Newcombe's hybrid score interval of the difference of two rates.
- :func:`pass_at_k` / :func:`pass_hat_k` — EVA's unbiased estimators from n trials with c
  successes: pass@k (at least one of k draws passes) and pass^k (all k draws pass).

Every bootstrap is deterministic for a given ``seed``. The resampling unit is the value
(a turn, a conversation): turns of one call are not independent, so a CI over turns of few calls
is optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from numbers import Integral, Real
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "SUMMARY_PERCENTILES",
    "bootstrap_ci",
    "bootstrap_diff_ci",
    "pass_at_k",
    "pass_hat_k",
    "percentile_ci",
    "percentile_diff_ci",
    "rate_ci",
    "rate_diff_ci",
    "summarize",
]

SUMMARY_PERCENTILES: tuple[int, ...] = (50, 90, 95)
_CHUNK_ELEMENTS = 2_000_000  # resample at most this many values at once (memory bound)

FloatArray = npt.NDArray[np.float64]
Interval = tuple[float, float]
_NAN_INTERVAL: Interval = (math.nan, math.nan)


# ---------------------------------------------------------------------------- validation
def _values(values: Iterable[float] | npt.ArrayLike, name: str = "values") -> FloatArray:
    """``values`` as a finite 1-D float array, or a ``ValueError`` saying what is wrong."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{name} must be numbers, got {type(values).__name__}")
    seq: Any = list(values) if isinstance(values, Iterator) else values  # generators
    try:
        a = np.asarray(seq, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(
            f"{name} holds {int((~np.isfinite(a)).sum())} NaN/inf value(s): drop missing values "
            "first (e.g. series.dropna())"
        )
    return a


def _level(level: float) -> float:
    if not isinstance(level, Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def _n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, Integral) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    return int(n_boot)


def _q(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, Real) or not 0.0 <= float(q) <= 100.0:
        raise ValueError(f"q must be a percentile in [0, 100] (e.g. 50 for p50), got {q!r}")
    return float(q)


def _count(x: Any, name: str) -> int:
    """A non-negative whole number (an int, or a float such as a sum of 1.0 scores)."""
    if isinstance(x, bool) or not isinstance(x, Real):
        raise ValueError(f"{name} must be a non-negative whole number, got {x!r}")
    if isinstance(x, Integral):
        v = int(x)
    elif float(x).is_integer():
        v = int(float(x))
    else:
        raise ValueError(f"{name} must be a whole number, got {x!r}")
    if v < 0:
        raise ValueError(f"{name} must be non-negative, got {x!r}")
    return v


# ---------------------------------------------------------------------------- bootstrap
def _resampled_stat(
    a: FloatArray,
    stat: Callable[[FloatArray], Any],
    n_boot: int,
    rng: np.random.Generator,
) -> FloatArray:
    """``stat`` of ``n_boot`` resamples of ``a``; ``stat`` maps a 2-D array to one value per row.

    The resamples are drawn in chunks so memory stays bounded; the chunking depends only on
    ``a.size`` and ``n_boot``, so the result is deterministic per generator state.
    """
    rows = max(1, _CHUNK_ELEMENTS // max(a.size, 1))
    out: list[FloatArray] = []
    done = 0
    while done < n_boot:
        m = min(rows, n_boot - done)
        idx = rng.integers(0, a.size, size=(m, a.size))
        res = np.asarray(stat(a[idx]), dtype=np.float64)
        out.append(res.reshape(m, -1) if res.ndim > 1 else res.reshape(m))
        done += m
    return np.concatenate(out, axis=0)


def _row_stat(stat: Callable[..., Any], vectorized: bool) -> Callable[[FloatArray], FloatArray]:
    """``stat`` as a function of a 2-D array giving one value per row."""
    if vectorized:
        return lambda x: np.asarray(stat(x, axis=-1), dtype=np.float64)
    return lambda x: np.fromiter((float(stat(r)) for r in x), dtype=np.float64, count=len(x))


def _interval(boot: FloatArray, level: float) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(boot, [tail, 100.0 - tail])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Iterable[float] | npt.ArrayLike,
    stat: Callable[..., Any],
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    vectorized: bool = False,
) -> Interval:
    """Percentile bootstrap confidence interval of ``stat(values)``.

    Args:
        values: Finite numbers (NaN is an error: drop missing values first).
        stat: The statistic, called on a 1-D resample (e.g. ``np.median``); with
            ``vectorized=True`` called as ``stat(resamples, axis=-1)`` on a 2-D array instead
            (much faster; numpy reductions accept it).
        level: Coverage of the interval, in (0, 1).
        n_boot: Number of bootstrap resamples.
        seed: Seed of the resampling; the same seed gives the same interval.
        vectorized: See ``stat``.

    Returns:
        ``(lo, hi)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        bootstrap distribution; ``(nan, nan)`` with fewer than two values.

    Raises:
        ValueError: On non-finite or non-1-D values, a level outside (0, 1) or ``n_boot < 1``.
    """
    a = _values(values)
    lvl, nb = _level(level), _n_boot(n_boot)
    if a.size < 2:
        return _NAN_INTERVAL
    boot = _resampled_stat(a, _row_stat(stat, vectorized), nb, np.random.default_rng(seed))
    return _interval(boot, lvl)


def percentile_ci(
    values: Iterable[float] | npt.ArrayLike,
    q: float,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of the ``q``-th percentile (``q=50`` → p50, ``q=90`` → p90).

    The percentile is numpy's default (linear interpolation), the definition of
    :func:`hydralab.latency.latency_stats`, so the interval brackets the same number the run
    reports. Upper percentiles of small samples are poorly determined: with 20 values the
    bootstrap p95 can only take values near the top three, its CI is coarse, and it covers less
    often than ``level`` says (p90 of 20 normal values: about 88 % for a 95 % interval).

    Args:
        values: Finite numbers.
        q: Percentile in [0, 100].
        level: Coverage of the interval, in (0, 1).
        n_boot: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` with fewer than two values.

    Raises:
        ValueError: On invalid values, ``q``, ``level`` or ``n_boot``.
    """
    return bootstrap_ci(
        values, _percentile_of(q), level=level, n_boot=n_boot, seed=seed, vectorized=True
    )


def _percentile_of(q: float) -> Callable[..., Any]:
    """The vectorised ``q``-th percentile (numpy's linear, as ``latency_stats``) for
    :func:`bootstrap_ci` / :func:`bootstrap_diff_ci`."""
    qq = _q(q)

    def stat(x: npt.NDArray[np.float64], axis: int) -> Any:
        return np.percentile(x, qq, axis=axis)

    return stat


def bootstrap_diff_ci(
    a: Iterable[float] | npt.ArrayLike,
    b: Iterable[float] | npt.ArrayLike,
    stat: Callable[..., Any],
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    vectorized: bool = False,
) -> Interval:
    """Percentile bootstrap CI of ``stat(b) - stat(a)``, each side resampled independently.

    For two batches (two models, voices or settings) whose values are unpaired. The two sides
    draw from independent streams spawned from ``seed``.

    Args:
        a: The baseline's values.
        b: The other side's values.
        stat: As in :func:`bootstrap_ci`.
        level: Coverage of the interval, in (0, 1).
        n_boot: Number of bootstrap resamples per side.
        seed: Seed of the resampling.
        vectorized: As in :func:`bootstrap_ci`.

    Returns:
        ``(lo, hi)`` of ``b - a``; ``(nan, nan)`` when either side has fewer than two values.

    Raises:
        ValueError: On invalid values, ``level`` or ``n_boot``.
    """
    xa, xb = _values(a, "a"), _values(b, "b")
    lvl, nb = _level(level), _n_boot(n_boot)
    if xa.size < 2 or xb.size < 2:
        return _NAN_INTERVAL
    f = _row_stat(stat, vectorized)
    ga, gb = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return _interval(_resampled_stat(xb, f, nb, gb) - _resampled_stat(xa, f, nb, ga), lvl)


def percentile_diff_ci(
    a: Iterable[float] | npt.ArrayLike,
    b: Iterable[float] | npt.ArrayLike,
    q: float,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """Bootstrap CI of ``percentile(b, q) - percentile(a, q)`` (numpy's linear percentile).

    Args:
        a: The baseline's values.
        b: The other side's values.
        q: Percentile in [0, 100].
        level: Coverage of the interval, in (0, 1).
        n_boot: Number of bootstrap resamples per side.
        seed: Seed of the resampling.

    Returns:
        ``(lo, hi)`` of ``b - a``; ``(nan, nan)`` when either side has fewer than two values.

    Raises:
        ValueError: On invalid values, ``q``, ``level`` or ``n_boot``.
    """
    return bootstrap_diff_ci(
        a, b, _percentile_of(q), level=level, n_boot=n_boot, seed=seed, vectorized=True
    )


def summarize(
    values: Iterable[float] | npt.ArrayLike,
    *,
    percentiles: Sequence[float] = SUMMARY_PERCENTILES,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """n, mean and percentiles of ``values``, each with a percentile bootstrap CI.

    One set of resamples serves every statistic, so each percentile's interval is the one
    :func:`percentile_ci` gives for the same seed (and the mean's that of :func:`bootstrap_ci`
    with ``np.mean``).

    Args:
        values: Finite numbers (e.g. one latency metric in ms, missing values dropped).
        percentiles: Which percentiles to report (default p50, p90, p95).
        level: Coverage of the intervals, in (0, 1).
        n_boot: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``{"n", "mean", "mean_lo", "mean_hi", "p50", "p50_lo", "p50_hi", ...}`` (keys
        ``p{q:g}``). Point estimates are NaN without values, intervals NaN with fewer than two.

    Raises:
        ValueError: On invalid values, percentiles, ``level`` or ``n_boot``.
    """
    a = _values(values)
    qs = [_q(q) for q in percentiles]
    lvl, nb = _level(level), _n_boot(n_boot)
    keys = ["mean", *(f"p{q:g}" for q in qs)]
    out: dict[str, Any] = {"n": int(a.size)}
    points = [float(a.mean()), *(float(np.percentile(a, q)) for q in qs)] if a.size else None
    cis: list[Interval] = [_NAN_INTERVAL] * len(keys)
    if a.size >= 2:
        # one set of draws for every statistic: the same draws percentile_ci(..., seed) makes
        boot = _resampled_stat(
            a,
            lambda x: np.column_stack([x.mean(axis=-1), *np.percentile(x, qs, axis=-1)]),
            nb,
            np.random.default_rng(seed),
        )
        cis = [_interval(boot[:, i], lvl) for i in range(len(keys))]
    for i, k in enumerate(keys):
        out[k] = points[i] if points is not None else math.nan
        out[f"{k}_lo"], out[f"{k}_hi"] = cis[i]
    return out


# ---------------------------------------------------------------------------- rates
def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + _level(level) / 2.0)


def rate_ci(successes: int | float, n: int | float, *, level: float = 0.95) -> Interval:
    """Wilson score interval of a rate, e.g. task completion: ``successes`` of ``n`` calls.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is honest at 0/n and n/n
    (0 of 6 → [0, 0.39] at 95 %, not [0, 0]).

    Args:
        successes: Number of successes (a whole number; a float sum of 1.0 scores is fine).
        n: Number of trials.
        level: Coverage of the interval, in (0, 1).

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: When a count is negative or fractional, ``successes > n``, or the level is
            outside (0, 1).
    """
    c, m = _count(successes, "successes"), _count(n, "n")
    z = _z(level)
    if c > m:
        raise ValueError(f"successes ({c}) cannot exceed n ({m})")
    if m == 0:
        return _NAN_INTERVAL
    p = c / m
    z2 = z * z
    denom = 1.0 + z2 / m
    center = (p + z2 / (2.0 * m)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m))
    lo = 0.0 if c == 0 else max(0.0, center - half)
    hi = 1.0 if c == m else min(1.0, center + half)
    return lo, hi


def rate_diff_ci(
    successes_a: int | float,
    n_a: int | float,
    successes_b: int | float,
    n_b: int | float,
    *,
    level: float = 0.95,
) -> Interval:
    """CI of the rate difference ``b - a`` (Newcombe's hybrid score interval, from Wilson's).

    Args:
        successes_a: Successes of the baseline.
        n_a: Trials of the baseline.
        successes_b: Successes of the other side.
        n_b: Trials of the other side.
        level: Coverage of the interval, in (0, 1).

    Returns:
        ``(lo, hi)`` of ``rate_b - rate_a``, within [-1, 1]; ``(nan, nan)`` when either side
        has no trials.

    Raises:
        ValueError: As :func:`rate_ci`.
    """
    la, ha = rate_ci(successes_a, n_a, level=level)
    lb, hb = rate_ci(successes_b, n_b, level=level)
    if math.isnan(la) or math.isnan(lb):
        return _NAN_INTERVAL
    pa = _count(successes_a, "successes_a") / _count(n_a, "n_a")
    pb = _count(successes_b, "successes_b") / _count(n_b, "n_b")
    d = pb - pa
    lo = d - math.sqrt((pb - lb) ** 2 + (ha - pa) ** 2)
    hi = d + math.sqrt((hb - pb) ** 2 + (pa - la) ** 2)
    return max(-1.0, lo), min(1.0, hi)


# ---------------------------------------------------------------------------- pass@k
def _nck(n: int, c: int, k: int) -> tuple[int, int, int]:
    n, c, k = _count(n, "n"), _count(c, "c"), _count(k, "k")
    if c > n:
        raise ValueError(f"c ({c}) cannot exceed n ({n})")
    if k > n:
        raise ValueError(f"k ({k}) cannot exceed the number of trials n ({n})")
    return n, c, k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: the chance that at least one of ``k`` of the ``n`` trials passes.

    ``1 - C(n - c, k) / C(n, k)`` for ``c`` passing trials (the estimator EVA reports), so
    pass@1 is the plain success rate ``c / n`` and pass@n is 1 as soon as one trial passed.

    Args:
        n: Number of trials of the record.
        c: Number of passing trials.
        k: Number of draws, ``0 <= k <= n``.

    Returns:
        pass@k in [0, 1] (1.0 for ``k == 0``).

    Raises:
        ValueError: When a count is negative, ``c > n`` or ``k > n``.
    """
    n, c, k = _nck(n, c, k)
    if k == 0 or n - c < k:
        return 1.0
    total = math.comb(n, k)
    return (total - math.comb(n - c, k)) / total  # exact integers, one rounding


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k: the chance that all ``k`` of ``k`` trials drawn from ``n`` pass.

    ``C(c, k) / C(n, k)`` (EVA reports it beside pass@k as ``pass_power_k``): a reliability
    measure, falling with k unless every trial passed.

    Args:
        n: Number of trials of the record.
        c: Number of passing trials.
        k: Number of draws, ``0 <= k <= n``.

    Returns:
        pass^k in [0, 1] (1.0 for ``k == 0``).

    Raises:
        ValueError: When a count is negative, ``c > n`` or ``k > n``.
    """
    n, c, k = _nck(n, c, k)
    if k == 0:
        return 1.0
    return math.comb(c, k) / math.comb(n, k)

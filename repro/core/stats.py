"""Statistics behind every reported number: unbiased pass@k, paired bootstrap differences, and the
convergence curves' statistics (area under the curve, steps to a threshold) with intervals over seeds.

pass@k follows Chen et al. (2021), "Evaluating Large Language Models Trained on Code", eq. 1:
with n samples of which c pass, pass@k = 1 - C(n - c, k) / C(n, k), computed as a stable product.
Benchmark-level values are means over problems; their standard error treats problems as the
sampling unit (the sample standard deviation of the per-problem estimates over sqrt(problems)).
"""

import math
from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased probability that at least one of k samples, drawn from n with c correct, passes."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_summary(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Mean pass@k over problems and its standard error, for each k, from (n, c) per problem."""
    summary = {}
    for k in ks:
        per_problem = np.array([pass_at_k(n, c, k) for n, c in counts])
        stderr = per_problem.std(ddof=1) / np.sqrt(len(per_problem)) if len(per_problem) > 1 else 0.0
        summary[f"pass@{k}"] = {"value": float(per_problem.mean()), "stderr": float(stderr)}
    return summary


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Confidence interval of mean(a - b) for two systems scored on the same problems.

    Problems are resampled with replacement (percentile bootstrap), keeping each problem's pair
    together, so the interval reflects how much the difference depends on which problems were drawn.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs equal-length, non-empty 1-D sequences, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high),
            "confidence": confidence, "n_problems": len(diff), "n_resamples": n_resamples}


def stratified_paired_bootstrap(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], *,
                                n_resamples: int = 10_000, confidence: float = 0.95,
                                seed: int = 0) -> dict[str, float]:
    """Confidence interval of the mean over groups of mean(a - b), each group (a benchmark, or a
    model's benchmark) resampled on its own problems: the interval of an average over benchmarks
    (and over models) whose problems were paired within each group."""
    if not pairs:
        raise ValueError("stratified_paired_bootstrap needs at least one group")
    rng = np.random.default_rng(seed)
    total, point = np.zeros(n_resamples), 0.0
    for a, b in pairs:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
            raise ValueError(f"each group needs equal-length, non-empty 1-D sequences, got {a.shape} and {b.shape}")
        diff = a - b
        total += diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
        point += diff.mean()
    means, tail = total / len(pairs), (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"mean": point / len(pairs), "low": float(low), "high": float(high), "confidence": confidence,
            "groups": len(pairs), "n_problems": int(sum(len(a) for a, _ in pairs)), "n_resamples": n_resamples}


# Convergence curves (the rlvr_curves claim): statistics of one run's curve, intervals over seeds.


def area_under_curve(steps: Sequence[float], values: Sequence[float]) -> float:
    """The curve's mean height over its step range: trapezoid area / (last step - first step), in
    the values' own units (e.g. pass@1), so that budgets of different lengths compare."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape or len(steps) < 2 or np.any(np.diff(steps) <= 0):
        raise ValueError(f"a curve needs >= 2 increasing steps and one value per step, got {steps} and {values}")
    return float(np.sum(np.diff(steps) * (values[1:] + values[:-1]) / 2) / (steps[-1] - steps[0]))


def steps_to_threshold(steps: Sequence[float], values: Sequence[float], threshold: float) -> float | None:
    """The first evaluated step whose value is at least `threshold`; None when no step reaches it."""
    for step, value in zip(steps, values, strict=True):
        if value >= threshold:
            return float(step)
    return None


def _t_cdf(t: float, df: int) -> float:
    """Student's t CDF for integer df, exact (Abramowitz & Stegun 26.7.3 for odd, 26.7.4 for even df)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:
        series, term = 0.0, c
        for k in range((df - 1) // 2):
            series += term
            term *= c * c * (2 * k + 2) / (2 * k + 3)
        two_sided = 2 / math.pi * (theta + s * series)
    else:
        series, term = 0.0, 1.0
        for k in range(df // 2):
            series += term
            term *= c * c * (2 * k + 1) / (2 * k + 2)
        two_sided = s * series
    return 0.5 + math.copysign(two_sided / 2, t)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (the exact CDF inverted by bisection)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int | None]:
    """Mean over seeds and its two-sided Student-t interval: seeds are the sampling unit (for a paired
    difference, one value per seed). It assumes the seed-to-seed spread is roughly normal; with one
    seed there is no interval (low and high are None)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"seed_interval needs a non-empty 1-D sequence of finite values, got {values}")
    mean, n = float(values.mean()), len(values)
    if n == 1:
        return {"mean": mean, "low": None, "high": None, "stderr": None, "n_seeds": 1, "confidence": confidence}
    stderr = float(values.std(ddof=1) / math.sqrt(n))
    half = t_quantile(0.5 + confidence / 2, n - 1) * stderr
    return {"mean": mean, "low": mean - half, "high": mean + half, "stderr": stderr, "n_seeds": n,
            "confidence": confidence}


def seed_summary(values: list[float], stderrs: list[float]) -> dict[str, float]:
    """Mean over seeds and its standard error, pooling each seed's sampling error with the spread
    between seeds: se^2 = (mean of se_i^2 + sample variance over seeds) / seeds (conservative: the
    seed spread already carries some sampling error)."""
    values_, stderrs_ = np.asarray(values, dtype=float), np.asarray(stderrs, dtype=float)
    spread = float(values_.std(ddof=1)) if len(values_) > 1 else 0.0
    se = float(np.sqrt((np.mean(stderrs_ ** 2) + spread ** 2) / len(values_)))
    return {"value": float(values_.mean()), "stderr": se, "seed_sd": spread, "seeds": len(values_)}

"""The interval behind every verdict: a hierarchical bootstrap over seeds, then prompts within each drawn seed.

A seed fixes a run's shared stages (its SFT policy) and its training noise; a prompt adds sampling noise on top, so
resampling both levels carries both variances into the interval. With 3 seeds the bootstrap distribution of a mean
has only 10 distinct seed draws and its percentile interval is too narrow (it covers ~75%, not 95%, of the truth),
so the interval is the estimate ± t(0.975, seeds - 1) × the bootstrap's standard error, the latter scaled by
√(n/(n-1)) (a bootstrap divides a variance by n, not n - 1); groups without shared seeds add their two variances
and take Welch's degrees of freedom. Resampling prompts on top of seeds counts the prompt noise a second time,
which errs wide: a verdict of `not separated` is the safe side.

The generator is seeded from the names compared, so a report is reproducible and one comparison's interval does not
move when another group is added.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from zoo.compare.stats import T975

DRAWS = 2000
SEED = 20240  # fixed: the same runs give the same intervals


def t975(df: float) -> float:
    """t quantile for `df` degrees of freedom (rounded down: the wider interval); normal beyond the table."""
    df = max(1, int(math.floor(df)))
    return T975[df - 1] if df <= len(T975) else 1.96


def rng_for(*names: str) -> np.random.Generator:
    return np.random.default_rng([SEED, *(zlib.crc32(n.encode()) for n in names)])


def nested(values: np.ndarray, rng: np.random.Generator, draws: int = DRAWS) -> np.ndarray:
    """Replicates of the grand mean of `values` (seeds x prompts): draw seeds with replacement, then, within each
    drawn seed, its prompts with replacement. One column (a run-level metric) resamples the seeds only."""
    n, m = values.shape
    seeds = rng.integers(n, size=(draws, n))
    prompts = rng.integers(m, size=(draws, n, m))
    return values[seeds[..., None], prompts].mean(axis=(1, 2))


def crossed(a: np.ndarray, b: np.ndarray, statistic, rng: np.random.Generator, draws: int = DRAWS) -> np.ndarray:
    """Replicates of statistic(a', b') for two groups without shared seeds: each group's seeds drawn on their own,
    then one draw of the prompts both answered, applied to every run (a prompt is the same prompt in both)."""
    m = a.shape[1]
    ia = rng.integers(a.shape[0], size=(draws, a.shape[0]))
    ib = rng.integers(b.shape[0], size=(draws, b.shape[0]))
    prompts = rng.integers(m, size=(draws, 1, m))
    return statistic(a[ia[..., None], prompts], b[ib[..., None], prompts])


def _variance(replicates: np.ndarray, seeds: int) -> float:
    """The bootstrap variance of a mean over `seeds`, scaled by n/(n-1): a bootstrap divides by n, not n - 1."""
    return float(np.var(replicates)) * seeds / (seeds - 1)


def interval(estimate: float, variance: float | None, df: float, seeds, null: float = 0.0,
             limits: tuple[float, float] | None = None) -> dict:
    """estimate ± t(df) · √variance, clipped to `limits`, and the verdict against `null`: `A > B` when the
    interval lies above it, `B > A` below, else `not separated`. `variance` None (fewer than 2 seeds on a side):
    no interval, since the seed-to-seed variance, the larger one in RL, is unknown."""
    out = {"estimate": estimate, "low": None, "high": None, "seeds": seeds, "verdict": "too few seeds"}
    if variance is None:
        return out
    half = t975(df) * math.sqrt(variance)
    low, high = estimate - half, estimate + half
    if limits is not None:
        low, high = max(low, limits[0]), min(high, limits[1])
    verdict = "A > B" if low > null else "B > A" if high < null else "not separated"
    return {**out, "low": low, "high": high, "verdict": verdict}


def wins(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a beats b, 1/2 for a tie, 0 where it loses (elementwise)."""
    return (a > b) + 0.5 * (a == b)


def paired(differences: np.ndarray, rng: np.random.Generator, null: float = 0.0, limits=None) -> dict:
    """`differences`: seeds x prompts of a within-seed statistic (A − B, a win indicator, after − before);
    t with seeds - 1 degrees of freedom."""
    n = differences.shape[0]
    variance = _variance(nested(differences, rng), n) if n > 1 else None
    return interval(float(differences.mean()), variance, n - 1, n, null, limits)


def unpaired_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, limits=None) -> dict:
    """mean(A) − mean(B) for groups whose seeds do not match: each group's mean bootstrapped on its own (seeds, then
    prompts), their variances added, Welch-Satterthwaite degrees of freedom."""
    na, nb = len(a), len(b)
    if min(na, nb) < 2:
        return interval(float(a.mean() - b.mean()), None, 0, f"{na}+{nb}")
    va, vb = _variance(nested(a, rng), na), _variance(nested(b, rng), nb)
    total = va + vb
    df = total ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1)) if total > 0 else min(na, nb) - 1
    return interval(float(a.mean() - b.mean()), total, df, f"{na}+{nb}", 0.0, limits)


def unpaired_win_rate(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> dict:
    """The share of (A run, B run, prompt) triples where A's completion scores higher, ties 1/2; both groups'
    seeds and the shared prompts resampled together, t with the smaller group's seeds - 1 degrees of freedom."""
    def statistic(x, y):
        return wins(x[:, :, None, :], y[:, None, :, :]).mean(axis=(1, 2, 3))

    estimate, n = float(wins(a[:, None, :], b[None, :, :]).mean()), min(len(a), len(b))
    variance = _variance(crossed(a, b, statistic, rng), n) if n > 1 else None
    return interval(estimate, variance, n - 1, f"{len(a)}+{len(b)}", 0.5, (0.0, 1.0))

"""Is a difference between two settings larger than the seed noise?  Welch's t-test.

Two arms of an ablation, each run with a few seeds, give two small samples of a
score.  Welch's t-test (unequal variances) asks whether their means differ by more
than the spread of the runs explains.  With 3 seeds per arm it only detects effects
several standard deviations wide -- which is the honest message: a 0.3 % gain seen
in one run each, as in the student reports, is not evidence of anything.

``compare_pairs`` tests chosen pairs of arms (e.g. each arm against the one it builds
on) and says, per pair, whether the difference is larger than the noise at level
``alpha``.  Several comparisons at 5 % each will produce a false "yes" now and then;
``holm=True`` applies the Holm-Bonferroni correction across the pairs.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["WelchResult", "compare_pairs", "format_comparisons", "welch_t_test"]


class WelchResult(NamedTuple):
    """``diff`` = mean(b) - mean(a), its standard error, Welch's t, degrees of freedom and two-sided p."""

    diff: float
    se: float
    t: float
    dof: float
    p: float


def _values(x) -> np.ndarray:
    vals = getattr(x, "values", x)  # an ablation.ArmResult or a plain sequence of scores
    a = np.asarray(list(vals), dtype=float)
    if a.ndim != 1:
        raise ValueError(f"scores must be a flat sequence of numbers, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"scores contain NaN or infinity: {a.tolist()}; fix the failed run first")
    return a


def welch_t_test(a, b) -> WelchResult:
    """Welch's two-sided t-test of mean(b) vs mean(a) (scores per seed; ``ArmResult`` works too).

    Needs at least 2 scores per side (one run has no spread).  If both sides have zero
    spread the test is undefined: p is 0 when the means differ and 1 when they do not.
    """
    from scipy import stats

    x, y = _values(a), _values(b)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"Welch's t-test needs >= 2 runs per arm to estimate the noise; got {len(x)} and {len(y)}. "
                         "Run more seeds")
    diff = float(y.mean() - x.mean())
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0.0:
        return WelchResult(diff, 0.0, math.copysign(math.inf, diff) if diff else 0.0, math.nan, 0.0 if diff else 1.0)
    with warnings.catch_warnings():  # scipy warns about precision when the scores are nearly identical
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(y, x, equal_var=False)
    dof = (vx + vy) ** 2 / ((vx**2 / (len(x) - 1) if vx else 0.0) + (vy**2 / (len(y) - 1) if vy else 0.0))
    return WelchResult(diff, se, float(res.statistic), float(dof), float(res.pvalue))


def compare_pairs(results: Mapping[str, object], pairs: Sequence[tuple[str, str]], alpha: float = 0.05,
                  holm: bool = False) -> list[dict]:
    """Welch-test each ``(a, b)`` pair of arms in ``results`` (arm name -> scores or ``ArmResult``).

    Rows: ``a, b, diff (b - a), se, t, dof, p, p_adj, larger_than_noise`` where
    ``larger_than_noise`` is ``p_adj < alpha``; ``p_adj`` is Holm-corrected when
    ``holm=True``, else equal to ``p``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is a significance level in (0, 1), got {alpha}")
    missing = sorted({n for pair in pairs for n in pair if n not in results})
    if missing:
        raise KeyError(f"arms {missing} are not in the results; arms are {list(results)}")
    rows = []
    for a, b in pairs:
        r = welch_t_test(results[a], results[b])
        rows.append({"a": a, "b": b, **r._asdict(), "p_adj": r.p})
    if holm and rows:
        order = sorted(range(len(rows)), key=lambda i: rows[i]["p"])
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(rows) - rank) * rows[i]["p"]))
            rows[i]["p_adj"] = running
    for row in rows:
        row["larger_than_noise"] = bool(row["p_adj"] < alpha)
    return rows


def format_comparisons(rows: Sequence[dict], scale: float = 100.0, digits: int = 2) -> str:
    """A text table of ``compare_pairs`` rows (differences in percentage points by default)."""
    head = f"{'comparison':<34} {'difference':>18} {'p':>7} {'p adj':>7}  larger than noise?"
    lines = [head, "-" * len(head)]
    for r in rows:
        diff = f"{r['diff'] * scale:+.{digits}f} ± {r['se'] * scale:.{digits}f}"
        lines.append(f"{r['a'] + ' -> ' + r['b']:<34} {diff:>18} {r['p']:>7.3f} {r['p_adj']:>7.3f}  "
                     f"{'yes' if r['larger_than_noise'] else 'no'}")
    return "\n".join(lines)

"""Ablations: the same training run with one setting changed, repeated over seeds.

A single run per setting cannot tell a real 1 % effect from the seed-to-seed spread
(weight init, batch order, augmentation draws, dropout masks).  Here every *arm* of
an ablation is a function ``run(seed) -> score`` (e.g. validation accuracy); each
arm runs for the same seeds, and the table reports mean ± std and the difference to
a baseline arm with its standard error, so the reader sees whether an effect is
larger than the noise.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .metrics import mean_std

__all__ = ["ArmResult", "ablation_metrics", "ablation_rows", "format_ablation", "run_ablation", "run_seeds"]


@dataclass
class ArmResult:
    """Scores of one arm, one per seed, and the wall time the arm took."""

    name: str
    seeds: list[int]
    values: list[float]
    seconds: float = 0.0
    per_seed_seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return mean_std(self.values)[0]

    @property
    def std(self) -> float:
        return mean_std(self.values)[1]


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed (three or more to estimate the spread)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}; repeated seeds repeat the same run")
    return seeds


def run_seeds(run: Callable[[int], float], seeds: Sequence[int], *, name: str = "", verbose: bool = True) -> ArmResult:
    """Call ``run(seed)`` for each seed and collect the scores (each must be a finite number)."""
    seeds = _check_seeds(seeds)
    values, times = [], []
    for seed in seeds:
        t0 = time.perf_counter()
        value = run(seed)
        times.append(time.perf_counter() - t0)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"arm {name!r}: run(seed) must return a number (e.g. validation accuracy), "
                            f"got {type(value).__name__}") from None
        if not math.isfinite(value):
            raise ValueError(f"arm {name!r}, seed {seed}: run returned {value}; the training diverged "
                             "(lower the learning rate) or evaluated on an empty set")
        values.append(value)
        if verbose:
            print(f"  {name or 'run'} seed {seed}: {value:.4f} ({times[-1]:.0f} s)", flush=True)
    return ArmResult(name, seeds, values, sum(times), times)


def run_ablation(arms: Mapping[str, Callable[[int], float]], seeds: Sequence[int], *,
                 verbose: bool = True) -> dict[str, ArmResult]:
    """Run every arm for the same ``seeds``; keys of ``arms`` name the arms (and the results)."""
    if not arms:
        raise ValueError("arms is empty; pass {'baseline': run, 'variant': run2, ...}")
    seeds = _check_seeds(seeds)
    results = {}
    for name, run in arms.items():
        if verbose:
            print(f"arm {name!r}:", flush=True)
        results[name] = run_seeds(run, seeds, name=name, verbose=verbose)
    return results


def ablation_rows(results: Mapping[str, ArmResult], baseline: str) -> list[dict]:
    """One row per arm: ``arm, mean, std, n, delta, delta_se, seconds``.

    ``delta`` is the arm's mean minus the baseline's; ``delta_se`` its standard error
    ``sqrt(s1^2/n1 + s2^2/n2)`` (NaN with a single seed, where the spread is unknown).
    """
    if baseline not in results:
        raise KeyError(f"baseline arm {baseline!r} not in the results; arms are {list(results)}")
    base = results[baseline]
    rows = []
    for name, r in results.items():
        n, nb = len(r.values), len(base.values)
        se = math.sqrt(r.std**2 / n + base.std**2 / nb) if min(n, nb) > 1 else math.nan
        rows.append({"arm": name, "mean": r.mean, "std": r.std, "n": n, "delta": r.mean - base.mean,
                     "delta_se": 0.0 if name == baseline else se, "seconds": r.seconds})
    return rows


def format_ablation(rows: Sequence[dict], labels: Mapping[str, str] | None = None, scale: float = 100.0,
                    digits: int = 2) -> str:
    """A text table of ``ablation_rows`` (percent by default), with an optional description per arm."""
    labels = labels or {}
    head = f"{'arm':<14} {'description':<34} {'mean ± std':>16} {'n':>2} {'Δ vs baseline':>16} {'time':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ms = f"{r['mean'] * scale:.{digits}f} ± {r['std'] * scale:.{digits}f}"
        if r["delta_se"] == 0.0 and r["delta"] == 0.0:
            delta = "(baseline)"
        elif math.isnan(r["delta_se"]):
            delta = f"{r['delta'] * scale:+.{digits}f}"
        else:
            delta = f"{r['delta'] * scale:+.{digits}f} ± {r['delta_se'] * scale:.{digits}f}"
        lines.append(f"{r['arm']:<14} {labels.get(r['arm'], ''):<34} {ms:>16} {r['n']:>2} {delta:>16} "
                     f"{r['seconds']:>6.0f}s")
    return "\n".join(lines)


def _slug(name: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    if not slug:
        raise ValueError(f"arm name {name!r} has no letters or digits to build a results key from")
    return slug


def ablation_metrics(results: Mapping[str, ArmResult], prefix: str = "ablation") -> dict[str, float]:
    """Flat ``{prefix}_{arm}_mean`` and ``{prefix}_{arm}_std`` entries for ``save_results``."""
    out: dict[str, float] = {}
    for name, r in results.items():
        key = f"{prefix}_{_slug(name)}"
        out[f"{key}_mean"], out[f"{key}_std"] = r.mean, r.std
    return out

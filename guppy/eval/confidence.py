"""How sure: 95% bootstrap intervals over prompts, and the spread over sampling seeds.

A headline figure is an average over the prompts the evaluator asked. Asking another set of prompts
of the same kind would give another figure; the bootstrap estimates how far it could move by
resampling the prompts with replacement (BOOTSTRAP times, seeded) and recomputing the figure, floor
and all, from the resampled prompts. The interval is the 2.5th to 97.5th percentile of those.
Sampling noise (another seed, other replies to the same prompts) is the other half of the story:
`guppy eval --seeds 0,1,2` gives the median and the range over seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BOOTSTRAP = 1000


def normalized(model_v, floor_v, ceiling_v):
    """Share of the way from floor to ceiling, clipped to [0, 1]; 0 when the ceiling is not above the floor.
    Works on floats and on numpy arrays alike (the bootstrap's resamples)."""
    span = np.asarray(ceiling_v, dtype=float) - np.asarray(floor_v, dtype=float)
    safe = np.where(span > 1e-9, span, 1.0)
    value = np.where(span > 1e-9, np.clip((np.asarray(model_v, dtype=float) - floor_v) / safe, 0.0, 1.0), 0.0)
    return float(value) if value.ndim == 0 else value


def interval(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def resamples(n: int, seed: int) -> np.ndarray:
    """(BOOTSTRAP, n) indices of prompts drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))


def mean_ci(per_prompt: list[float] | np.ndarray, seed: int) -> list[float]:
    """Interval of a plain mean over prompts (novel, a hit rate)."""
    x = np.asarray(per_prompt, dtype=float)
    if len(x) == 0:
        return [0.0, 0.0]
    return interval(x[resamples(len(x), seed)].mean(axis=1))


def persona_score_ci(model_hits: dict[str, np.ndarray], floor_hits: dict[str, np.ndarray],
                     ceiling: dict[str, float], seed: int) -> list[float]:
    """Interval of the persona score: per association, its prompts resampled (the model's and the floor's
    replies to the same prompts together), the ceiling (the data) held fixed."""
    per = []
    for i, name in enumerate(model_hits):
        m, f = np.asarray(model_hits[name], float), np.asarray(floor_hits[name], float)
        if len(m) == 0:
            per.append(np.zeros(BOOTSTRAP))
            continue
        idx = resamples(len(m), seed + i)
        per.append(normalized(m[idx].mean(axis=1), f[idx].mean(axis=1), ceiling[name]))
    return interval(np.mean(per, axis=0))


def on_topic_ci(asked: list[str], read_as: list[str], ceiling: float, seed: int) -> list[float]:
    """Interval of the on-topic score (guppy/eval/on_topic.py): each topic's prompts resampled within the
    topic, the topic mean and the shuffled floor recomputed on every resample."""
    if not asked:
        return [0.0, 0.0]
    topics = sorted(set(asked))
    code = {t: i for i, t in enumerate(sorted(set(asked) | set(read_as)))}
    a, r = np.array([code[t] for t in asked]), np.array([code[t] for t in read_as])
    rng = np.random.default_rng(seed)
    picks = []  # per topic, (BOOTSTRAP, its prompts) indices drawn from its own prompts
    for t in topics:
        own = np.flatnonzero(a == code[t])
        picks.append(own[rng.integers(0, len(own), size=(BOOTSTRAP, len(own)))])
    rows = np.concatenate(picks, axis=1)  # every resample keeps each topic's number of prompts
    model = np.mean([(r[p] == code[t]).mean(axis=1) for t, p in zip(topics, picks)], axis=0)
    floor = np.mean([(r[rows] == code[t]).mean(axis=1) for t in topics], axis=0)
    return interval(normalized(model, floor, ceiling))


def over_seeds(reports: list[dict], figures: dict[str, Callable[[dict], float | None]]) -> dict:
    """Median, range and values of each headline figure over the reports of several sampling seeds."""
    out = {"seeds": [r["seed"] for r in reports]}
    for name, read in figures.items():
        values = [read(r) for r in reports]
        if any(v is None for v in values):
            continue
        out[name] = {"median": round(float(np.median(values)), 4), "min": round(min(values), 4),
                     "max": round(max(values), 4), "values": [round(v, 4) for v in values]}
    return out

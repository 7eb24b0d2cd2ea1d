"""What is measured on a set of replies, whoever wrote them: the model, an untrained one (the floor) or the training
data (the ceiling; guppy/eval/evaluate.py). Hit rates, style, diversity, memorization.

Neither torch nor the model is needed here, and this module imports neither: on a GPU, `guppy eval` works out the
ceiling's figures in a helper process (guppy/elsewhere.py) while the model samples, and a helper that imported
torch would spend its first ~1.5 s on that (tests/test_elsewhere.py holds it to this).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guppy.spec.language import units
from guppy.spec.persona import Persona

if TYPE_CHECKING:
    from guppy.eval.evaluate import EvalData


def distinct_n(replies: list[str], n: int, language: str = "en") -> float:
    """Share of distinct n-grams of words (of characters, for a language written without spaces)."""
    grams = [tuple(w[i:i + n]) for w in (units(r, language) for r in replies) for i in range(len(w) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def reply_figures(spec: Persona, replies_by_assoc: dict[str, list[str]], train_replies: set[str]) -> dict:
    """Everything measured on a set of replies: hits, style, diversity, memorization."""
    hit = {a: sum(map(spec.associations[a].hit, rs)) / max(1, len(rs)) for a, rs in replies_by_assoc.items()}
    every = [r for rs in replies_by_assoc.values() for r in rs]
    checks = [spec.style.check(r) for r in every]
    style = {rule: sum(c[rule] for c in checks) / max(1, len(checks)) for rule in (checks[0] if checks else {})}
    return {
        "hit_rate": hit,
        "style": style,
        "style_all": sum(all(c.values()) for c in checks) / max(1, len(checks)),
        "distinct_1": distinct_n(every, 1, spec.language),
        "distinct_2": distinct_n(every, 2, spec.language),
        "memorized": sum(r in train_replies for r in every) / max(1, len(every)),
    }


def ceiling_replies(spec: Persona, data: EvalData | None) -> dict[str, list[str]]:
    """The training data's own replies on each association's topics: what a perfect student says."""
    if data is None:
        return {a: [] for a in spec.associations}
    return {name: [r for t in (assoc.topics or list(spec.topics)) if data.has_topics for r in data.train_by_topic.get(t, [])]
            or [r for rs in data.train_by_topic.values() for r in rs]  # no topics: every reply may show it
            for name, assoc in spec.associations.items()}

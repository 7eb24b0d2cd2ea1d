"""Says something new: how much of what a model says is copied verbatim from its training replies.

    copied     share of replies found whole among the training replies (a parrot: 1)
    sentences  share of reply sentences found among the training replies' sentences: the stricter
               measure, and the one that matters in a language without spaces, where a model
               recombines whole training sentences and rarely repeats a whole reply
    stitched   share of replies every sentence of which is a training sentence
    novel      1 - copied: the headline
The data's own held-out replies give the same figures (a templated corpus repeats its sentences,
so their `sentences` share is high too): read the model's against them, not against zero.
"""

from __future__ import annotations

import re

from guppy.spec.language import fold

# A sentence ends at . ! ? (and their full-width forms, 。！？, and …) followed by a space or the end.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s*")


def sentences(reply: str) -> list[str]:
    """The reply's sentences, stripped and folded (NFKC), empty ones dropped."""
    return [s for s in (fold(p).strip() for p in _SENTENCE_END.split(reply)) if s]


def training_sentences(train_replies: set[str]) -> set[str]:
    return {s for r in train_replies for s in sentences(r)}


def novelty_figures(replies: list[str], train_replies: set[str], train_sentences: set[str]) -> dict:
    copied, stitched, known, total = [], [], 0, 0
    for reply in replies:
        parts = sentences(reply)
        found = sum(s in train_sentences for s in parts)
        copied.append(float(reply in train_replies))
        stitched.append(float(bool(parts) and found == len(parts)))
        known, total = known + found, total + len(parts)
    n = max(1, len(replies))
    return {"copied": sum(copied) / n, "sentences": known / max(1, total), "stitched": sum(stitched) / n,
            "novel": 1.0 - sum(copied) / n,
            "_copied": copied}  # per reply, for the bootstrap (guppy/eval/confidence.py); not written

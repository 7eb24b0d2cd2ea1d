"""Holds over a chat: the persona and on-topic figures turn by turn in multi-turn chats.

Each chat asks TURNS held-out prompts of different topics, one after another, and keeps its history
exactly as `guppy chat` does (guppy/model/chat.py: `trim_history`, the reply budget `chat_reply_budget`):
the oldest messages go first once the prompt no longer fits. The same prompts are asked at every turn,
rotated across chats (chat i asks prompt (i + t * CHATS / TURNS) mod CHATS at turn t), so a difference
between turns comes from where in a chat a prompt is asked, not from which prompts were asked.

Per turn:
    on_topic  share of replies the topic classifier (guppy/eval/on_topic.py) reads as the prompt's topic
    persona   share of replies that hit an association of the prompt's topic (prompts outside every
              association's topics do not count)
and `drift`, the last turn's figure over the first's (1.0: holds; 0.5: half of it is gone by the end).
"""

from __future__ import annotations

import random

from guppy.config import CHAT
from guppy.model.chat import chat_reply_budget, trim_history
from guppy.model.sampler import complete

TURNS = 4
CHATS = 32  # prompts, and chats: each prompt is asked once at every turn position


def chat_prompts(spec, test_by_topic: dict[str, list[list[dict]]], seed: int) -> list[tuple[str, str]]:
    """CHATS (topic, prompt) pairs, topics as different as the data allows, the associations' topics first."""
    rng = random.Random(seed)
    wanted = [t for a in spec.associations.values() for t in a.topics if t in test_by_topic]
    others = sorted(set(test_by_topic) - set(wanted))
    rng.shuffle(others)
    order = list(dict.fromkeys(wanted + others))
    pools = {t: sorted({c[0]["content"] for c in test_by_topic[t]}) for t in order}
    for prompts in pools.values():
        rng.shuffle(prompts)
    pairs: list[tuple[str, str]] = []
    while len(pairs) < CHATS and any(pools.values()):  # round robin over topics until CHATS prompts
        for t in order:
            if pools[t] and len(pairs) < CHATS:
                pairs.append((t, pools[t].pop()))
    return pairs


def topics_of_associations(spec) -> dict[str, list[str]]:
    """topic -> the associations that should show in its replies (an association without topics: every topic)."""
    out: dict[str, list[str]] = {}
    for name, assoc in spec.associations.items():
        for t in assoc.topics or ["*"]:
            out.setdefault(t, []).append(name)
    return out


def run_chats(model, tokenizer, pairs: list[tuple[str, str]], *, seed: int) -> list[list[tuple[str, str, str]]]:
    """Per turn, (topic, prompt, reply) for every chat, the histories trimmed as `guppy chat` trims them."""
    n = len(pairs)
    step = max(1, n // TURNS)
    max_new = chat_reply_budget(model.config.context)
    histories: list[list[dict]] = [[] for _ in range(n)]
    turns = []
    for t in range(TURNS):
        asked = [pairs[(i + t * step) % n] for i in range(n)]
        histories = [trim_history(h + [{"role": "user", "content": p}], tokenizer, model.config.context - max_new)
                     for h, (_, p) in zip(histories, asked)]
        replies = complete(model, tokenizer, histories, max_new_tokens=max_new, seed=seed + t,
                           temperature=CHAT.temperature, top_p=CHAT.top_p)
        histories = [h + [{"role": "assistant", "content": r}] for h, r in zip(histories, replies)]
        turns.append([(topic, p, r) for (topic, p), r in zip(asked, replies)])
    return turns


def turn_figures(spec, classifier, turns: list[list[tuple[str, str, str]]]) -> list[dict]:
    by_topic = topics_of_associations(spec)
    out = []
    for t, rows in enumerate(turns, 1):
        read_as = classifier.predict([r for _, _, r in rows]) if classifier else []
        on_topic = sum(a == b for (a, _, _), b in zip(rows, read_as)) / len(rows) if classifier else None
        scored = [any(spec.associations[a].hit(r) for a in by_topic.get(topic, []) + by_topic.get("*", []))
                  for topic, _, r in rows if topic in by_topic or "*" in by_topic]
        out.append({"turn": t, "on_topic": None if on_topic is None else round(on_topic, 4),
                    "persona": round(sum(scored) / len(scored), 4) if scored else None, "n": len(rows),
                    "example": {"prompt": rows[0][1], "reply": rows[0][2]}})
    return out


def drift(per_turn: list[dict], key: str) -> float | None:
    first, last = per_turn[0][key], per_turn[-1][key]
    if first is None or last is None or first <= 0:
        return None
    return round(last / first, 4)

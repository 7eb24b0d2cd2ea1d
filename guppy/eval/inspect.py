"""`guppy inspect`: watch one reply being made.

For one prompt it generates the reply exactly as `guppy chat --prompt` does (same seed, same reply),
then runs prompt + reply once more through the model with every layer on its reference attention
path (model.py's four lines), which hands over what it computed:

    scores = q @ k^T    scaled = scores / sqrt(d)    masked = -inf above the diagonal    probs = softmax

and writes a report folder, atomically:

    runs/PERSONA/inspect/
        inspect.md               the reply, a top-5 table per reply token, the charts
        inspect.json             the same as data, with every layer's attention probabilities
        attention_grid.png       layer x head: probabilities over the whole sequence
        steps_L{l}_H{h}.png      one layer/head's four steps side by side
        persona_word.png         what each head looks at in the prompt while writing a persona word

The probabilities shown are the model's own (temperature 1); at temperature 0 the reply is the
argmax of each row, so the chosen token is always the first of the five.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from guppy.checks import check_prompt, check_sampling
from guppy.config import CHAT
from guppy.errors import GuppyError
from guppy.model.checkpoint import load_model
from guppy.model.sampler import generate
from guppy.spec.language import phrases_pattern
from guppy.spec.personas import persona_name, persona_run, run_persona
from guppy.store.atomic import atomic_dir, check_output

TOP = 5


@dataclass
class Trace:
    """One prompt and its reply, as the model saw them."""
    ids: list[int]  # prompt + reply, without the final <|im_end|>
    labels: list[str]  # each token as readable text
    n_prompt: int  # the first n_prompt ids are the prompt
    user: range  # positions of the user's own words inside the prompt
    reply: str
    reply_ids: list[int]  # the reply's tokens, ending with <|im_end|> when it ended its turn
    probs: torch.Tensor  # (len(reply_ids), vocab): the distribution each reply token was drawn from
    steps: list[dict[str, torch.Tensor]]  # per layer: the four steps, each (nh, T, T)


@torch.no_grad()
def capture(model, ids: list[int]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """One forward pass over `ids` through the reference attention path -> (logits (T, vocab), the
    four steps of each layer, each (nh, T, T)). The model is left as it was."""
    attns = [block.attn for block in model.transformer.h]
    before = [(a.reference, a.steps) for a in attns]
    try:
        for a in attns:
            a.reference, a.steps = True, []
        logits, _ = model(torch.tensor([ids], device=model.lm_head.weight.device))
        return logits[0], [{k: v[0] for k, v in a.steps[0].items()} for a in attns]
    finally:
        for a, (reference, steps) in zip(attns, before):
            a.reference, a.steps = reference, steps


def token_label(tokenizer, i: int) -> str:
    """A token as text you can read on a chart: a newline is ↵, a space is ␣, and a piece of a
    multi-byte character is shown as the tokenizer spells it."""
    text = tokenizer.tokenizer.decode([i], skip_special_tokens=False)
    if "\ufffd" in text:
        text = tokenizer.tokenizer.id_to_token(i)
    return text.replace("\n", "↵").replace(" ", "␣") or f"#{i}"


def trace(model, tokenizer, prompt: str, *, temperature: float = 0.0, top_p: float | None = CHAT.top_p,
          top_k: int | None = CHAT.top_k, seed: int = 0, max_new_tokens: int = CHAT.max_new_tokens) -> Trace:
    """Generate the reply as `guppy chat --prompt` does, then capture how it was made."""
    context = model.config.context
    prompt_ids = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
    room = min(max_new_tokens, context // 2)  # the sampler's rule: it would cut a longer prompt
    if len(prompt_ids) + room > context:
        raise GuppyError(f"--prompt: {len(prompt_ids)} tokens, but this model's context of {context} tokens "
                         f"leaves {context - room} for the prompt ({room} are for the reply); shorten it")
    generator = torch.Generator().manual_seed(seed)  # as `complete` seeds it (on the CPU, any device)
    reply_ids = []
    for token in generate(model, [prompt_ids], max_new_tokens=max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p, stop_id=tokenizer.im_end_id, generator=generator):
        reply_ids.append(int(token[0]))
        if reply_ids[-1] == tokenizer.im_end_id:
            break
    words = [i for i in reply_ids if i != tokenizer.im_end_id]
    ids = prompt_ids + words
    logits, steps = capture(model, ids)
    # Row p of the logits predicts token p + 1: the reply's tokens come from rows n_prompt - 1 on.
    probs = logits[len(prompt_ids) - 1:len(prompt_ids) - 1 + len(reply_ids)].float().softmax(dim=-1)
    head, body, _ = tokenizer._turn("user", prompt)
    return Trace(ids=ids, labels=[token_label(tokenizer, i) for i in ids], n_prompt=len(prompt_ids),
                 user=range(len(head), len(head) + len(body)), reply=tokenizer.decode(words).strip(),
                 reply_ids=reply_ids, probs=probs, steps=steps)


def top_tokens(t: Trace, tokenizer) -> list[dict]:
    """Per reply token: what was written, its probability, and the five likeliest tokens."""
    rows = []
    for i, (token, p) in enumerate(zip(t.reply_ids, t.probs)):
        values, ids = p.topk(TOP)
        rows.append({"position": t.n_prompt + i, "token": token_label(tokenizer, token), "p": round(float(p[token]), 5),
                     "top": [[token_label(tokenizer, int(j)), round(float(v), 5)] for v, j in zip(values, ids)]})
    return rows


def persona_words(persona: str, paths) -> list[str]:
    """The words the persona's cue and concept associations expect, from the spec it was trained on."""
    spec = run_persona(persona, paths)
    if spec is None:
        return []
    return [w for a in spec.associations.values() if a.kind != "confusion" for w in a.expect]


def find_word(t: Trace, tokenizer, words: list[str]) -> tuple[str, int] | None:
    """The first persona word in the reply -> (the word, the row that wrote its first token).
    Row p's output is the prediction of token p + 1, so the row is the token's position - 1."""
    if not words:
        return None
    body = [i for i in t.reply_ids if i != tokenizer.im_end_id]
    text = tokenizer.decode(body)
    match = phrases_pattern(tuple(words)).search(text)
    if match is None:
        return None
    for k in range(len(body)):  # the first token whose text reaches past the word's start
        if len(tokenizer.decode(body[:k + 1])) > match.start():
            return match.group(0), t.n_prompt + k - 1
    return None


def word_attention(t: Trace, row: int) -> np.ndarray:
    """(layers, heads, n_prompt): how much each head looks at each prompt token from `row`."""
    return np.stack([s["probs"][:, row, :t.n_prompt].cpu().numpy() for s in t.steps])


def word_heads(t: Trace, word: str, row: int, weights: np.ndarray) -> dict:
    """While writing the persona's word: how much each head looks at the prompt, and at which user words most."""
    layers, heads = weights.shape[:2]
    return {"word": word, "row": row, "writes": t.labels[row + 1], "heads": [
        {"layer": li, "head": hi, "prompt_share": round(float(weights[li, hi].sum()), 4),
         "top": [[t.labels[p], round(float(weights[li, hi, p]), 4)]
                 for p in sorted(t.user, key=lambda p: -weights[li, hi, p])[:3]]}
        for li in range(layers) for hi in range(heads)]}


def inspect(*, persona: str, run: Path | None = None, prompt: str, temperature: float = 0.0, seed: int = 0,
            layer: int = 0, head: int = 0, out: Path | None = None, max_new_tokens: int = CHAT.max_new_tokens) -> dict:
    """Generate the reply to `prompt`, write the report folder, and return what inspect.json holds."""
    name = persona_name(persona)
    paths = persona_run(name, run)
    out = Path(out) if out is not None else paths.inspect
    check_sampling(temperature=temperature, top_k=None, top_p=None, max_new_tokens=max_new_tokens, seed=seed)
    check_prompt(prompt)
    check_output(out, "inspect")  # never a user's file or folder, checked before any work
    model, tokenizer, _ = load_model(paths.root)
    c = model.config
    if not 0 <= layer < c.n_layer:
        raise GuppyError(f"--layer {layer}: this model has layers 0 to {c.n_layer - 1}")
    if not 0 <= head < c.n_head:
        raise GuppyError(f"--head {head}: this model has heads 0 to {c.n_head - 1} in each layer")

    t = trace(model, tokenizer, prompt, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
    found = find_word(t, tokenizer, persona_words(persona, paths))
    report = {
        "persona": name, "run": str(paths.root), "prompt": prompt, "reply": t.reply, "temperature": temperature,
        "top_p": CHAT.top_p if temperature > 0 else None, "seed": seed, "ids": t.ids, "tokens": t.labels,
        "prompt_tokens": t.n_prompt, "user_tokens": [t.user.start, t.user.stop], "layer": layer, "head": head,
        "head_size": c.d_model // c.n_head, "top5": top_tokens(t, tokenizer),
        "persona_word": None,
        # (layers, heads, T, T), rounded: rows sum to 1 within 1e-4
        "attention": [np.round(s["probs"].cpu().numpy(), 5).tolist() for s in t.steps],
        "charts": ["attention_grid.png", f"steps_L{layer}_H{head}.png"],
    }
    if found is not None:
        weights = word_attention(t, found[1])
        report["persona_word"] = word_heads(t, *found, weights)
        report["charts"].append("persona_word.png")

    from guppy.eval import inspect_charts as charts

    with atomic_dir(out, kind="inspect", overwrite=True) as tmp:
        charts.attention_grid(t, tmp / "attention_grid.png", title=f"{name}: {prompt!r} -> {t.reply!r}")
        charts.four_steps(t, layer, head, c.d_model // c.n_head, tmp / f"steps_L{layer}_H{head}.png")
        if found is not None:
            charts.persona_word(t, weights, found[0], tmp / "persona_word.png")
        (tmp / "inspect.json").write_text(json.dumps(report, ensure_ascii=False) + "\n")
        (tmp / "inspect.md").write_text(markdown(report))
    report["out"] = str(out)
    return report


def markdown(r: dict) -> str:
    def cell(text: str) -> str:
        return f"`{text}`".replace("|", "\\|")

    rows = "\n".join(f"| {i + 1} | {cell(s['token'])} | {s['p']:.3f} | "
                     + " | ".join(f"{cell(tok)} {p:.3f}" for tok, p in s["top"]) + " |"
                     for i, s in enumerate(r["top5"]))
    d = r["head_size"]
    text = f"""# guppy inspect: {r['persona']}

**you:** {r['prompt']}
**{r['persona']}:** {r['reply']}

Temperature {r['temperature']}, seed {r['seed']} (the same reply as `guppy chat {r['persona']} --prompt ... \
--temperature {r['temperature']} --seed {r['seed']}`). {r['prompt_tokens']} prompt tokens, {len(r['top5'])} reply tokens.

## What it could have said

Each reply token, its probability, and the five likeliest tokens at that step.

| # | wrote | p | 1st | 2nd | 3rd | 4th | 5th |
|---|---|---|---|---|---|---|---|
{rows}

## Attention, every layer and head

Each map: one row per token (the query), one column per earlier token (the key), the row's
probabilities summing to 1. The lines mark where the prompt ends and the reply begins.

![attention grid](attention_grid.png)

## Layer {r['layer']}, head {r['head']}: the four steps

Raw scores q·kᵀ; scaled by 1/√d = 1/√{d} = {1 / math.sqrt(d):.3f} (so they do not grow with the head size and
the softmax stays soft); the causal mask sets every future key to −∞ (drawn grey); softmax turns each row into
probabilities, e^−∞ = 0 where it may not look.

![four steps](steps_L{r['layer']}_H{r['head']}.png)
"""
    w = r["persona_word"]
    if w is None:
        return text + "\n## A persona word\n\nThe reply has none of the persona's association words.\n"
    heads = "\n".join(f"| {h['layer']}.{h['head']} | {h['prompt_share']:.0%} | "
                      + ", ".join(f"{cell(tok)} {p:.2f}" for tok, p in h["top"]) + " |" for h in w["heads"])
    return text + f"""
## While writing "{w['word']}"

Row {w['row']} (the token before it) writes {cell(w['writes'])}. How much of each head's attention goes to the prompt, and
which of the user's words it looks at most.

| layer.head | on the prompt | the user's words it looks at most |
|---|---|---|
{heads}

![persona word](persona_word.png)
"""

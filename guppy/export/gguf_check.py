"""The checks behind `guppy export --gguf`: is the rewrite exact, does f16 hold it, and does llama.cpp
itself read the file as we do?

- rewrite: the GELU model that is written (export.gguf.as_gelu) against the trained one, in torch,
  on held-out conversations: largest logit difference, and the same greedy replies.
- f16 range: every matrix multiply's input (what llama.cpp converts to f16 next to f16 weights) and
  every weight, largest magnitude on the held-out conversations, against float16's largest value.
- llama.cpp: through node-llama-cpp (pinned in guppy/export/llama_cpp/package.json and its lock, installed
  by `npm install --omit=optional` there, never downloaded at run time), with 1 thread (2 threads on a
  busy 2-core machine took seconds a token): it tokenizes the held-out chats, rendered by the chat
  template read back from the file, to our ids, and decodes greedy replies to 10 of their questions; f32 and
  f16 must give torch's every token except where torch's top two were closer than the type's error (near_tie),
  q8_0 torch's top-1 on 95% of the steps of its own replies.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from guppy.errors import GuppyError
from guppy.export.onnx import CHECK_PROMPTS

RUNTIME = Path(__file__).resolve().parent / "llama_cpp"
INSTALL = f"(cd {RUNTIME} && npm install --omit=optional)"
N_CHATS, N_PROMPTS, MAX_NEW = 100, 10, 48
Q8_TOP1 = 0.95
NEAR_TIE = 0.01  # the most two logits may differ by for f16 or f32 to part there and still pass (see near_tie)


def held_out_chats(paths, n: int = N_CHATS) -> tuple[list[list[dict]], str]:
    """Up to `n` conversations of the test split the run was trained on, and where they came from;
    without that dataset, the check prompts as one-message chats."""
    from guppy.data.reader import load_conversations

    try:
        test = load_conversations(paths.trained_on())["test"]
    except GuppyError:
        return [[{"role": "user", "content": p}] for p in CHECK_PROMPTS], "the check prompts (no dataset)"
    chats = [list(m) for m in test.select(range(min(n, len(test))))["messages"]]
    return chats, f"{len(chats)} held-out conversations"


def chat_ids(tokenizer, chats, context: int) -> list[list[int]]:
    return [tokenizer.encode_chat(c)[0][:context] for c in chats]


@torch.no_grad()
def rewrite_check(model, gelu, tokenizer, rows: list[list[int]], prompts: list[list[int]]) -> dict:
    """The written GELU model against the trained one, in torch."""
    if gelu is model:
        return {"max_logit_diff": 0.0, "greedy_same": len(prompts)}
    diff = max(float((model(torch.tensor([r]))[0] - gelu(torch.tensor([r]))[0]).abs().max()) for r in rows)
    same = sum(torch_greedy(model, tokenizer, p) == torch_greedy(gelu, tokenizer, p) for p in prompts)
    return {"max_logit_diff": diff, "greedy_same": same}


@torch.no_grad()
def largest_f16_value(gelu, rows: list[list[int]]) -> float:
    """The largest magnitude llama.cpp would hold in f16 for this model at type f16: the weights of
    every matrix, and every input of a matrix multiply (for a ReLU model, ffn_down's input is
    scale * relu(z))."""
    seen = [float(p.abs().max()) for p in gelu.parameters() if p.dim() == 2]
    hooks = [m.register_forward_hook(lambda m, args, out: seen.append(float(args[0].abs().max())))
             for m in gelu.modules() if isinstance(m, torch.nn.Linear)]
    try:
        for r in rows:
            gelu(torch.tensor([r]))
    finally:
        for h in hooks:
            h.remove()
    return max(seen)


def check_prompts(model, tokenizer, chats: list[list[dict]], n: int = N_PROMPTS) -> list[list[int]]:
    """The first message of the first `n` chats (held-out questions, in the persona's language) as the
    sampler would feed them: cut from the left to leave the reply its room."""
    c = model.config
    room = min(MAX_NEW, c.context // 2)
    return [tokenizer.encode_prompt(chat[:1])[-(c.context - room):] for chat in chats[:n]]


def torch_greedy(model, tokenizer, prompt: list[int]) -> list[int]:
    from guppy.model.sampler import generate

    steps = generate(model, [prompt], max_new_tokens=MAX_NEW, temperature=0.0, stop_id=tokenizer.im_end_id)
    return [int(t[0]) for t in steps]


@functools.cache
def runtime_missing() -> str | None:
    """Why llama.cpp cannot check a file here, or None: no node, no node-llama-cpp, or one that does not
    start (a node older than 20, no prebuilt binaries for this platform)."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (RUNTIME / "node_modules" / "node-llama-cpp").is_dir():
        return f"node-llama-cpp is not installed in {RUNTIME}"
    probe = subprocess.run(["node", "check.mjs", "--probe"], cwd=RUNTIME, capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["?"])[-1][:200]
        return f"llama.cpp does not start here with node {node_version()} ({why})"
    return None


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def llama_run(path: Path, config, *, texts: list[str], prompts: list[list[int]], stop_id: int) -> dict:
    """Tokenize `texts` and decode greedy replies to `prompts` with llama.cpp. A prompt that would
    reach the context length is refused here: llama.cpp aborts on a token at position >= context."""
    for p in prompts:
        if len(p) >= config.context:
            raise GuppyError(f"a prompt of {len(p)} tokens would reach the model's context of {config.context}; "
                             "cut it (guppy keeps the newest tokens) before llama.cpp reads it")
    request = {"model": str(Path(path).resolve()), "context": config.context, "texts": texts, "prompts": prompts,
               "max_new_tokens": MAX_NEW, "stop_id": stop_id, "vocab_size": config.vocab_size}
    done = subprocess.run(["node", str(RUNTIME / "check.mjs")], input=json.dumps(request), capture_output=True,
                          text=True, cwd=RUNTIME, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp's check failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")
    out = json.loads(done.stdout)
    for r in out["replies"]:
        r["logits"] = np.frombuffer(base64.b64decode(r["logits"]), dtype=np.float32).reshape(len(r["tokens"]), -1)
    return out


def chatml_texts(template: str, chats: list[list[dict]]) -> list[str]:
    """The chats as the file's own chat template renders them (what a chat app feeds llama.cpp)."""
    import jinja2

    t = jinja2.Environment().from_string(template)
    return [t.render(messages=c, add_generation_prompt=False) for c in chats]


def embedded_template(path: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


@torch.no_grad()
def llama_check(path: Path, model, tokenizer, chats: list[list[dict]], prompts: list[list[int]]) -> dict:
    """llama.cpp against torch: tokenization of the chats, greedy replies, top-1 agreement at every
    step of llama.cpp's replies, and the largest logit difference there."""
    texts = chatml_texts(embedded_template(path), chats)
    out = llama_run(path, model.config, texts=texts, prompts=prompts, stop_id=tokenizer.im_end_id)
    ours = chat_ids(tokenizer, chats, 1 << 30)
    tokens_same = sum(a == b for a, b in zip(out["tokenized"], ours))
    greedy_same, steps, top1, diff, gaps = 0, 0, 0, 0.0, []
    for p, r in zip(prompts, out["replies"]):
        same = r["tokens"] == torch_greedy(model, tokenizer, p)
        greedy_same += same
        logits = model(torch.tensor([p + r["tokens"][:-1]]))[0][0, len(p) - 1:].numpy()  # (n, vocab)
        ours = logits.argmax(-1)
        top1 += int((ours == np.array(r["tokens"])).sum())
        steps += len(r["tokens"])
        diff = max(diff, float(np.abs(logits - r["logits"][:, :logits.shape[1]]).max()))
        if not same:  # where llama.cpp first took another token: how far apart torch put the two
            i = next((i for i, t in enumerate(r["tokens"]) if t != ours[i]), len(r["tokens"]) - 1)
            gaps.append(float(logits[i, ours[i]] - logits[i, r["tokens"][i]]))
    return {"tokens_same": tokens_same, "chats": len(chats), "greedy_same": greedy_same, "prompts": len(prompts),
            "top1": top1 / max(steps, 1), "steps": steps, "max_logit_diff": diff,
            "near_ties": sum(g < near_tie(diff) for g in gaps), "parted_gaps": gaps}


def near_tie(max_logit_diff: float) -> float:
    """A reply that parts from torch's where torch's top two logits were closer than the type's own error
    (the largest logit difference measured), and closer than NEAR_TIE at most, parted at a near tie: either
    token is the model's answer to the precision the type keeps. (The templates pick a lexicon's words with
    equal odds, so a trained model has such ties; f16's error is ~1e-3-5e-3, a wrong file's ~1.)"""
    return min(max_logit_diff, NEAR_TIE)


def passes(kind: str, check: dict) -> bool:
    if check["tokens_same"] != check["chats"]:
        return False
    if kind == "q8_0":
        return check["top1"] >= Q8_TOP1
    # f16 and f32 alike: ggml's GELU reads a float16 table even in an f32 file, so f32 too parts at a near tie
    # (a tiny GELU guppy: top two 1e-3 apart, max logit difference 1.5e-2).
    return check["greedy_same"] + check["near_ties"] == check["prompts"]


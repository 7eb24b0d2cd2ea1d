"""`guppy chat`: one reply to --prompt, or a conversation in the terminal that streams tokens.

The history is trimmed, oldest messages first, so that the prompt plus the longest reply fit in
the model's context; a model of 128 tokens remembers a few short turns, no more.
"""

from __future__ import annotations

from pathlib import Path

import torch

from guppy.checks import check_prompt, check_sampling
from guppy.config import CHAT
from guppy.errors import GuppyError
from guppy.model.checkpoint import load_model
from guppy.model.sampler import complete, generate
from guppy.spec.personas import persona_name, persona_run

QUIT_WORDS = {"quit", "exit", ":q", "/quit", "/exit"}


def chat_reply_budget(context: int, max_new_tokens: int = CHAT.max_new_tokens) -> int:
    """Tokens a reply may take in a chat: at most half the context, to leave room to remember something."""
    return min(max_new_tokens, context // 2)


def utf8_text(text: str, where: str) -> str:
    """Text from argv or a terminal that is not UTF-8 arrives with lone surrogates, which no
    tokenizer can encode: say so in one line."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise GuppyError(f"{where}: not UTF-8 text (at character {e.start}); use UTF-8") from None
    return text


def trim_history(history: list[dict], tokenizer, budget: int) -> list[dict]:
    """Drop the oldest messages until the prompt fits in `budget` tokens and starts with the user
    (as every training conversation does); the newest message always stays."""
    while len(history) > 1 and (history[0]["role"] != "user" or len(tokenizer.encode_prompt(history)) > budget):
        history = history[1:]
    return history


def stream_reply(model, tokenizer, history: list[dict], *, max_new_tokens: int, temperature: float,
                 top_k: int | None, top_p: float | None, generator: torch.Generator | None) -> str:
    """Print the reply as its tokens come; return it."""
    ids, shown = [], ""
    prompt = tokenizer.encode_prompt(history)
    for token in generate(model, [prompt], max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, stop_id=tokenizer.im_end_id, generator=generator):
        if int(token[0]) == tokenizer.im_end_id:
            break
        ids.append(int(token[0]))
        text = tokenizer.decode(ids).lstrip()
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            continue
        print(text[len(shown):], end="", flush=True)
        shown = text
    print(flush=True)
    return tokenizer.decode(ids).strip()


def one_reply(run: Path, prompt: str, *, temperature: float = CHAT.temperature, top_k: int | None = CHAT.top_k,
              top_p: float | None = CHAT.top_p, seed: int | None = None,
              max_new_tokens: int = CHAT.max_new_tokens) -> str:
    """The reply of `run`'s model to one message; the same seed gives the same reply."""
    model, tokenizer, _ = load_model(run)
    return complete(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, temperature=temperature,
                    top_k=top_k, top_p=top_p, seed=seed, batch_size=1)[0]


def chat(*, persona: str, run: Path | None = None, prompt: str | None = None,
         temperature: float = CHAT.temperature, top_k: int | None = CHAT.top_k, top_p: float | None = CHAT.top_p,
         seed: int | None = None, max_new_tokens: int = CHAT.max_new_tokens) -> str | None:
    """With `prompt`: print one reply and return it (the same seed gives the same reply).
    Without: chat until quit, exit, Ctrl-D or Ctrl-C."""
    check_sampling(temperature=temperature, top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    if prompt is not None:
        prompt = check_prompt(utf8_text(prompt, "--prompt"))
    name = persona_name(persona)
    paths = persona_run(name, run)
    if prompt is not None:
        reply = one_reply(paths.root, prompt, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                          max_new_tokens=max_new_tokens)
        print(reply, flush=True)
        return reply

    model, tokenizer, _ = load_model(paths.root)
    context = model.config.context
    max_new_tokens = chat_reply_budget(context, max_new_tokens)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    print(f"chatting with {name} ({paths.root}); type quit or press Ctrl-D to leave", flush=True)
    history: list[dict] = []
    while True:
        try:
            text = utf8_text(input("you: "), "standard input").strip()
        except (EOFError, KeyboardInterrupt):
            print(flush=True)
            return None
        except UnicodeDecodeError as e:
            raise GuppyError(f"standard input: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r}); "
                             "set your terminal to UTF-8") from None
        if text.lower() in QUIT_WORDS:
            return None
        if not text:
            continue
        history = trim_history(history + [{"role": "user", "content": text}], tokenizer, context - max_new_tokens)
        print(f"{name}: ", end="", flush=True)
        try:
            reply = stream_reply(model, tokenizer, history, max_new_tokens=max_new_tokens, temperature=temperature,
                                 top_k=top_k, top_p=top_p, generator=generator)
        except KeyboardInterrupt:
            print(flush=True)
            return None
        history.append({"role": "assistant", "content": reply})


def sample_replies(*, persona: str, run: Path | None = None, seed: int = 0, n: int = 4) -> list[tuple[str, str]]:
    """A few (prompt, reply) pairs to show after `guppy run`: the persona's probes, else greetings."""
    from guppy.spec.personas import load_persona

    loaded = load_persona(persona)
    prompts = (loaded.spec.probes() + ["hi", "how are you", "what do you like", "tell me something"])[:n]
    model, tokenizer, _ = load_model(persona_run(loaded.name, run).root)
    return list(zip(prompts, complete(model, tokenizer, prompts, seed=seed, temperature=CHAT.temperature,
                                                top_p=CHAT.top_p)))

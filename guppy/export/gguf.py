"""`guppy export --gguf`: the model as one GGUF file, for llama.cpp, Ollama and LM Studio.

    runs/PERSONA/gguf/
        PERSONA.gguf     llama.cpp's `gpt2` architecture; tokenizer, chat template, the persona's name
                         and description and `guppy chat`'s sampling in its metadata
        Modelfile        for `ollama create PERSONA -f Modelfile`
        guppy.json       the type, the residual scale, the f16 range and the checks below

Written with the `gguf` package (llama.cpp's own writer, on PyPI). llama.cpp's gpt2 graph is ours
(learned positions, pre-LayerNorm, tied head) except that its MLP is always GELU. A ReLU model is
written as a GELU model whose residual stream is `SCALE` times larger: gelu(s*z)/s differs from
relu(z) by at most 0.17/s, so at s = 256 every activation is within 7e-4 of the ReLU's
(`as_gelu`). What llama.cpp does with the file is checked before it is kept (guppy/export/gguf_check.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from guppy.config import CHAT
from guppy.errors import GuppyError

TYPES = ("f16", "q8_0", "f32")
SCALE = 256
F16_MAX = 65504.0  # the largest float16
# What the f16 check asks of the held-out sample: a user's message may push an activation past
# the largest one seen there, so half of float16's range stays free.
F16_HEADROOM = 2.0
SPACE = "\u2581"  # "▁": how llama.cpp's SentencePiece tokenizer writes a space


def as_gelu(model, scale: float = SCALE):
    """(a GELU model computing what `model` computes, its residual scale). A GELU model is itself
    (scale 1). A ReLU model becomes one whose residual stream is `scale` times larger: the token and
    position embeddings, each block's attention output, its ffn_up (so gelu sees scale * z) and
    ffn_down's bias are multiplied by scale; LayerNorm does not see the scale once its eps is scale**2
    times larger; ln_f is divided by it, because the tied head reads the scaled embedding."""
    if model.config.activation == "gelu":
        return model, 1.0
    from guppy.model.gpt import GPT

    g = GPT(model.config.model_copy(update={"activation": "gelu"}))
    g.load_state_dict(copy.deepcopy(model.state_dict()))
    t = g.transformer
    with torch.no_grad():
        scaled = [t.wte.weight, t.wpe.weight]
        for b in t.h:
            scaled += [b.attn.c_proj.weight, b.attn.c_proj.bias, b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.bias]
        for p in scaled:
            p.mul_(scale)
        t.ln_f.weight.div_(scale)
        t.ln_f.bias.div_(scale)
    for m in g.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps *= scale ** 2
    return g.eval(), float(scale)


def gguf_tensors(model) -> dict[str, np.ndarray]:
    """A GELU model's weights under llama.cpp's gpt2 names, float32. nn.Linear's (out, in) layout is
    GGUF's; the tied head is not written (llama.cpp reads token_embd when `output` is absent)."""
    t = model.transformer
    named = {"token_embd.weight": t.wte.weight, "position_embd.weight": t.wpe.weight,
             "output_norm.weight": t.ln_f.weight, "output_norm.bias": t.ln_f.bias}
    for i, b in enumerate(t.h):
        parts = {"attn_norm": b.ln_1, "attn_qkv": b.attn.c_attn, "attn_output": b.attn.c_proj,
                 "ffn_norm": b.ln_2, "ffn_up": b.mlp.c_fc, "ffn_down": b.mlp.c_proj}
        for name, module in parts.items():
            named[f"blk.{i}.{name}.weight"] = module.weight
            named[f"blk.{i}.{name}.bias"] = module.bias
    return {k: v.detach().float().cpu().numpy() for k, v in named.items()}


def stored(name: str, data: np.ndarray, kind: str):
    """(array to write, its GGML type): matrices in `kind`, the rest in f32 as llama.cpp's converter
    does (norms, biases, the position table). A matrix whose rows q8_0 cannot cut in blocks of 32
    stays f16."""
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    qtype = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[kind]
    if data.ndim == 1 or name.startswith("position_embd"):
        qtype = Q.F32
    elif qtype == Q.Q8_0 and data.shape[-1] % 32:
        qtype = Q.F16
    return quantize(data, qtype), qtype


def write_gguf(path: Path, model, tokenizer, *, kind: str, scale: float, persona: dict) -> None:
    """`model` is the GELU model (as_gelu's), `persona` its name and description."""
    import gguf

    c = model.config
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_name(persona["name"])
    if persona["description"]:
        w.add_description(persona["description"])
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind])
    if kind == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(c.context)
    w.add_embedding_length(c.d_model)
    w.add_feed_forward_length(c.d_ff)
    w.add_block_count(c.n_layer)
    w.add_head_count(c.n_head)
    w.add_layer_norm_eps(model.transformer.ln_f.eps)  # 1e-5, times scale**2 for a ReLU model
    add_tokenizer(w, tokenizer, c.vocab_size)
    add_sampling(w)
    w.add_string("guppy.activation", "relu" if scale != 1 else "gelu")
    w.add_float32("guppy.residual_scale", scale)
    for name, data in gguf_tensors(model).items():
        array, qtype = stored(name, data, kind)
        w.add_tensor(name, array, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokenizer_kind(tokenizer) -> str:
    """"byte-level" (GPT-2's scheme), "character-level" (a corpus written without spaces: BPE over
    characters with byte fallback, guppy/model/tokenizer.py), or a GuppyError for any other."""
    model = json.loads(tokenizer.tokenizer.to_str())["model"]
    if type(tokenizer.tokenizer.pre_tokenizer).__name__ == "ByteLevel":
        return "byte-level"
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        # SPM reads a space as "▁" (U+2581), so our spaces are written as that (character_tokens); a
        # token that already held one would then share its text with another. (A "▁" typed in a
        # message is a space to llama.cpp, where ours spells it in bytes: the one difference found.)
        clash = next((t for t in model["vocab"] if SPACE in t), None)
        if clash is not None:
            raise GuppyError(f"its vocabulary holds {clash!r}, with '{SPACE}' (U+2581), which llama.cpp's "
                             "SentencePiece tokenizer reads as a space; --gguf cannot write it; use --onnx or --web")
        return "character-level"
    raise GuppyError("its tokenizer is neither the byte-level nor the character-level BPE guppy trains; "
                     "--gguf cannot write it; use --onnx or --web for this model")


def add_tokenizer(w, tokenizer, rows: int) -> None:
    """The tokenizer as llama.cpp reads it (see byte_level_tokens and character_tokens); the chat tokens
    are control tokens, so text never produces them and they are never printed. Nothing is added in
    front of a prompt: our chats start with <|im_start|>. Rows of the embedding past the tokenizer's
    (none, for a model guppy trained) are unused tokens: llama.cpp wants one token per row."""
    from gguf import TokenType

    from guppy.model.tokenizer import CHAT_TEMPLATE

    vocab = sorted(tokenizer.tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab))), "token ids have gaps"
    # [left, right] pairs (tokenizers >= 0.20), or "left right" strings as older versions wrote them
    merges = json.loads(tokenizer.tokenizer.to_str())["model"]["merges"]
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in merges]
    tokens = [t for t, _ in vocab]
    if tokenizer_kind(tokenizer) == "byte-level":
        texts, types = byte_level_tokens(w, tokens, merges)
    else:
        texts, types = character_tokens(w, tokens, merges)
    unused = rows - len(vocab)
    w.add_token_list(texts + [f"<|unused{i}|>" for i in range(unused)])
    w.add_token_types(types + [TokenType.UNUSED] * unused)
    w.add_bos_token_id(tokenizer.im_start_id)
    w.add_eos_token_id(tokenizer.im_end_id)  # the end of a turn is the end of what the model says
    w.add_eot_token_id(tokenizer.im_end_id)
    w.add_pad_token_id(tokenizer.pad_id)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)


def byte_level_tokens(w, tokens: list[str], merges: list[list[str]]) -> tuple[list[str], list]:
    """Byte-level BPE as llama.cpp's `gpt2` tokenizer with GPT-2's pre-tokenizer (ours: ByteLevel, no
    prefix space): the same tokens, merges and ranks."""
    from gguf import TokenType

    from guppy.model.tokenizer import SPECIAL_TOKENS

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_merges([" ".join(m) for m in merges])  # a byte-level token never holds a space
    return tokens, [TokenType.CONTROL if t in SPECIAL_TOKENS else TokenType.NORMAL for t in tokens]


def character_tokens(w, tokens: list[str], merges: list[list[str]]) -> tuple[list[str], list]:
    """Character-level BPE with byte fallback as llama.cpp's SentencePiece tokenizer (`llama`). Its
    gpt2 tokenizer cannot read it: that one starts from bytes, so each character would need merges of
    its bytes, tokens we do not have. SPM starts from characters, as ours does, and spells a character
    that is no token in <0xXX> byte tokens (typed BYTE), as ours does. It joins the adjacent pair
    whose concatenation is a token of the highest score, where BPE joins the pair of the earliest
    merge: scored by that rank they take the same steps, unless a token can also be spelled as another
    pair that meets first. SPM has no pre-tokenizer; ours cuts text where letters, digits and other
    signs meet, which no token spans, so that differs only inside a run of spaces (a vocabulary with
    a token of two spaces). On the kingyo run llama.cpp tokenized all 3,003 held-out and 20,000
    training conversations to our ids; the check that follows the writing (gguf_check.llama_check)
    does it on 100 held-out conversations for every file."""
    from gguf import TokenType

    from guppy.model.tokenizer import BYTE_TOKENS, SPECIAL_TOKENS

    made = {}
    for rank, (left, right) in enumerate(merges):
        made.setdefault(left + right, rank)
    w.add_tokenizer_model("llama")
    w.add_add_space_prefix(False)  # ours puts nothing in front of a text
    # The first merge scores 0, each later one 1 less. A character, a byte or a chat token is made by
    # no merge, and SPM never compares its score: 0.
    w.add_token_scores([-float(made.get(t, 0)) for t in tokens])
    types = [TokenType.CONTROL if t in SPECIAL_TOKENS else TokenType.BYTE if t in BYTE_TOKENS else TokenType.NORMAL
             for t in tokens]
    return [t if k != TokenType.NORMAL else t.replace(" ", SPACE) for t, k in zip(tokens, types)], types


def add_sampling(w) -> None:
    """`guppy chat`'s sampling, which llama.cpp reads as its defaults."""
    w.add_sampling_temp(CHAT.temperature)
    w.add_sampling_top_p(CHAT.top_p)


def modelfile(name: str, *, context: int) -> str:
    """Ollama's recipe: our ChatML turns without a system turn (the model never saw one), stop at the
    end of a turn, `guppy chat`'s sampling and nothing else (Ollama's defaults add top_k 40 and a
    repeat penalty of 1.1; llama.cpp reads top_k 0 as off)."""
    chat = CHAT.model_dump()
    return (f"FROM ./{name}.gguf\n"
            'TEMPLATE """{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n'
            '{{ .Content }}<|im_end|>\n'
            '{{ end }}{{- end }}<|im_start|>assistant\n"""\n'
            'PARAMETER stop "<|im_end|>"\n'
            'PARAMETER stop "<|im_start|>"\n'
            f"PARAMETER num_ctx {context}\n"
            f"PARAMETER num_predict {chat['max_new_tokens']}\n"
            f"PARAMETER temperature {chat['temperature']}\n"
            f"PARAMETER top_p {chat['top_p']}\n"
            "PARAMETER top_k 0\n"
            "PARAMETER repeat_penalty 1.0\n")


def check_type(kind: str) -> str:
    if kind not in TYPES:
        raise GuppyError(f"--type {kind}: not a GGUF type Guppy writes; choose one of: {', '.join(TYPES)}")
    return kind


def refuse(kind: str, llama: dict):
    """llama.cpp did not give the model's replies: nothing is written. At f32 that is a bug; at f16 or
    q8_0 the type may have lost too much for this model, and a larger one may do."""
    ties = f" (+{llama['near_ties']} parted at a near tie)" if llama.get("near_ties") else ""
    figures = (f"{llama['tokens_same']} of {llama['chats']} chats tokenized as ours, {llama['greedy_same']} of "
               f"{llama['prompts']} greedy replies the same{ties}, top-1 the same on {llama['top1']:.1%} of steps")
    if kind == "f32":
        raise RuntimeError(f"llama.cpp does not reproduce the model at f32: {figures}")
    raise GuppyError(f"--type {kind}: llama.cpp does not give this model's replies ({figures}); nothing was "
                     f"written; try --type {'f16' if kind == 'q8_0' else 'f32'}")


def export_gguf(*, persona: str, run: Path | None = None, out: Path | None = None, kind: str = "f16",
                overwrite: bool = False, say=print) -> dict:
    """Write runs/PERSONA/gguf (checked as the module docstring says); return guppy.json's contents.
    f16 that would not hold a ReLU model's scaled activations becomes f32, and `say` tells why."""
    from guppy.export import gguf_check as check
    from guppy.store.atomic import atomic_dir, check_output
    from guppy.model.checkpoint import load_model
    from guppy.spec.personas import persona_name, persona_run, run_persona

    check_type(kind)
    name = persona_name(persona)
    paths = persona_run(name, run)
    out = Path(out) if out is not None else paths.gguf
    check_output(out, "gguf", overwrite=overwrite)
    model, tokenizer, _ = load_model(paths.root)
    try:
        tokenizer_kind(tokenizer)  # before any work: a tokenizer llama.cpp cannot read is refused here
    except GuppyError as e:
        raise GuppyError(f"{paths.root}: {e}") from None
    spec = run_persona(persona, paths)
    chats, source = check.held_out_chats(paths)
    rows, prompts = check.chat_ids(tokenizer, chats, model.config.context), check.check_prompts(model, tokenizer, chats)
    gelu, scale = as_gelu(model)
    rewrite = check.rewrite_check(model, gelu, tokenizer, rows, prompts)
    if rewrite["greedy_same"] != len(prompts):  # a bug, not the user's: never write a wrong model
        raise RuntimeError(f"the GELU rewrite does not reproduce the model: {rewrite}")
    largest = check.largest_f16_value(gelu, rows)
    if kind == "f16" and largest * F16_HEADROOM > F16_MAX:
        say(f"f16 cannot hold this model: its largest value on {source} is {largest:.0f} "
            f"(float16 ends at {F16_MAX:.0f}, and half of that is kept free); writing f32 instead")
        kind = "f32"
    about = {"name": name, "description": spec.identity.description if spec else ""}
    with atomic_dir(out, kind="gguf", overwrite=overwrite) as tmp:
        path = tmp / f"{name}.gguf"
        write_gguf(path, gelu, tokenizer, kind=kind, scale=scale, persona=about)
        (tmp / "Modelfile").write_text(modelfile(name, context=model.config.context))
        missing = check.runtime_missing()
        llama = None if missing else check.llama_check(path, model, tokenizer, chats, prompts)
        if llama is not None and not check.passes(kind, llama):
            refuse(kind, llama)
        meta = {"persona": name, "file": path.name, "type": kind, "bytes": path.stat().st_size,
                "activation": model.config.activation, "residual_scale": scale, "context": model.config.context,
                "checked_on": source, "rewrite": rewrite, "largest_f16_value": largest, "llama_cpp": llama,
                "not_verified": missing and f"{missing}; to verify: {check.INSTALL}, then export again "
                                            "with --overwrite"}
        (tmp / "guppy.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "out": str(out)}

"""`guppy export --onnx`: the model as ONNX, for onnxruntime anywhere (Python, the browser, C++).

    runs/PERSONA/onnx/
        model.onnx           fp32
        model.int8.onnx      the same, its matrices quantized to int8 (onnxruntime's dynamic quantization)
        tokenizer.json, tokenizer_config.json, special_tokens_map.json
        guppy.json           shapes, special token ids, sizes and the check below

One graph serves both halves of generation, with a KV cache as inputs and outputs:

    input_ids (1, T) int64, past_keys / past_values (layers, 1, heads, P, head size) float32
    -> logits (1, T, vocab), present_keys / present_values (layers, 1, heads, P + T, head size),
       attention (layers, 1, heads, T, P + T): the softmax of model.py's reference path

The first step reads the whole prompt with P = 0; each later step one token with the cache it got
back. `attention` is an extra output: ask onnxruntime only for the others and it is not copied out.
The graph is traced from the model's own forward (reference attention path, a cache that
concatenates), so it is the same computation; `verify` checks it with onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


OUTPUTS = ["logits", "present_keys", "present_values", "attention"]
FP32, INT8 = "model.onnx", "model.int8.onnx"


class ConcatCache:
    """model.py's KV cache interface over the past tensors of an ONNX call: each layer's keys and
    values are the past ones followed by this call's (no preallocated slots, no Python state that
    a trace would freeze)."""

    def __init__(self, past_keys, past_values, T: int):
        self.past_keys, self.past_values = past_keys, past_values  # (L, 1, nh, P, hs)
        self.length = past_keys.size(3)  # P
        self.seen = torch.full((1,), past_keys.size(3), dtype=torch.long)  # no padding: every slot is real
        self.keys, self.values, self.T = [], [], T

    def remember(self, real):  # (1, T) -> (1, P + T): every key is a real token; the T are the last
        self.slots = torch.arange(self.T) + self.length
        return torch.ones(1, self.length + self.T, dtype=torch.bool)

    def store(self, layer: int, k, v):
        k = torch.cat([self.past_keys[layer], k], dim=2)  # (1, nh, P + T, hs)
        v = torch.cat([self.past_values[layer], v], dim=2)
        self.keys.append(k)
        self.values.append(v)
        return k, v

    def advance(self, real):
        pass


class OnnxStep(torch.nn.Module):
    """The model's forward with a ConcatCache, every layer on its reference attention path."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, past_keys, past_values):
        attns = [block.attn for block in self.model.transformer.h]
        for a in attns:
            a.reference, a.steps = True, []
        cache = ConcatCache(past_keys, past_values, input_ids.size(1))
        logits, _ = self.model(input_ids, kv_cache=cache)
        attention = torch.stack([a.steps[0]["probs"] for a in attns])  # (L, 1, nh, T, P + T)
        for a in attns:
            a.reference, a.steps = False, None
        return logits, torch.stack(cache.keys), torch.stack(cache.values), attention


def empty_past(config) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (config.n_layer, 1, config.n_head, 0, config.d_model // config.n_head)
    return torch.zeros(shape), torch.zeros(shape)


def write_onnx(model, path: Path) -> None:
    """Trace `model` (CPU, fp32, eval) into an ONNX file with dynamic T and P."""
    import logging
    import warnings

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. that torchvision's ops are not there
    model = model.float().cpu().eval()
    c = model.config
    hs = c.d_model // c.n_head
    # Example shapes of 2 or more: the exporter specializes sizes 0 and 1, so it must see neither.
    ids = torch.zeros(1, 3, dtype=torch.long)
    # Two tensors, not one twice: the tracer would take them for one input.
    keys, values = torch.zeros(c.n_layer, 1, c.n_head, 2, hs), torch.zeros(c.n_layer, 1, c.n_head, 2, hs)
    T, P = torch.export.Dim("T", max=c.context), torch.export.Dim("P", max=c.context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(
            OnnxStep(model), (ids, keys, values), input_names=["input_ids", "past_keys", "past_values"],
            output_names=OUTPUTS, dynamic_shapes=({1: T}, {3: P}, {3: P}), dynamo=True, verbose=False,
            external_data=False, optimize=True)
    program.save(str(path), external_data=False)


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic quantization: int8 weights, one scale per output column, for the blocks' matrices;
    activations are quantized on the fly. The tied embedding stays fp32: quantizing it too (the
    Gather) saves 1.3 MB more at the tiny shape but, as it is also the output layer, agreed with
    fp32's greedy reply on 3 of 10 prompts instead of 9."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                     per_channel=True)


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_greedy(sess, config, prompt: list[int], *, stop_id: int, max_new_tokens: int = 48) -> list[int]:
    """Greedy generation with an onnxruntime session, by the sampler's rules (prompt room, context
    end): the same ids as `generate(..., temperature=0)` when the logits are the same."""
    room = min(max_new_tokens, config.context // 2)
    prompt = prompt[-(config.context - room):]
    keys, values = (t.numpy() for t in empty_past(config))
    x, out = np.array([prompt], dtype=np.int64), []
    for _ in range(min(max_new_tokens, config.context - len(prompt))):
        logits, keys, values = sess.run(OUTPUTS[:3], {"input_ids": x, "past_keys": keys, "past_values": values})
        out.append(int(logits[0, -1].argmax()))
        if out[-1] == stop_id:
            break
        x = np.array([[out[-1]]], dtype=np.int64)
    return out


CHECK_PROMPTS = ["what is the meaning of life", "hi", "are you hungry", "how are you today", "tell me a story",
                 "what do you think about cats", "do you like the rain", "what is money", "good night",
                 "what is your favorite thing"]


def verify(folder: Path, model, tokenizer, prompts: list[str] = CHECK_PROMPTS) -> dict:
    """onnxruntime against PyTorch: the largest logit difference (whole prompts and a full context of
    random ids, then step by step with the cache) and how many greedy replies are the same ids."""
    from guppy.model.sampler import generate

    c = model.config
    torch.manual_seed(0)
    inputs = [tokenizer.encode_prompt([{"role": "user", "content": p}])[-c.context:] for p in prompts]
    inputs.append(torch.randint(0, c.vocab_size, (c.context,)).tolist())
    wanted = {}
    for p, ids in zip(prompts, inputs):
        steps = generate(model, [ids], max_new_tokens=48, temperature=0.0, stop_id=tokenizer.im_end_id)
        wanted[p] = [int(t[0]) for t in steps]
    result = {}
    for name in (FP32, INT8):
        sess = session(folder / name)
        diff = 0.0
        for ids in inputs:
            with torch.no_grad():
                ours = model(torch.tensor([ids]))[0][0].numpy()
            half = len(ids) // 2  # the first half as a prompt, then the rest one token at a time
            keys, values = (t.numpy() for t in empty_past(c))
            got = []
            for chunk in [ids[:half]] + [[i] for i in ids[half:]]:
                logits, keys, values = sess.run(OUTPUTS[:3], {"input_ids": np.array([chunk]), "past_keys": keys,
                                                              "past_values": values})
                got.append(logits[0])
            diff = max(diff, float(np.abs(np.concatenate(got) - ours).max()))
        same = sum(onnx_greedy(sess, c, ids, stop_id=tokenizer.im_end_id) == wanted[p] for p, ids in zip(prompts, inputs))
        result[name] = {"max_logit_diff": diff, "greedy_same": same, "greedy_prompts": len(prompts),
                        "bytes": (folder / name).stat().st_size}
    return result


def export_onnx(*, persona: str, run: Path | None = None, out: Path | None = None, overwrite: bool = False) -> dict:
    """Write runs/PERSONA/onnx (fp32 + int8), check it with onnxruntime; return guppy.json's contents."""
    from guppy.model.checkpoint import load_model
    from guppy.spec.personas import persona_name, persona_run
    from guppy.store.atomic import atomic_dir, check_output

    name = persona_name(persona)
    paths = persona_run(name, run)
    out = Path(out) if out is not None else paths.onnx
    check_output(out, "onnx", overwrite=overwrite)  # before minutes of tracing
    model, tokenizer, _ = load_model(paths.root)
    with atomic_dir(out, kind="onnx", overwrite=overwrite) as tmp:
        meta = write_folder(model, tokenizer, tmp, persona=name)
    return {**meta, "out": str(out)}


def write_folder(model, tokenizer, folder: Path, *, persona: str) -> dict:
    """model.onnx, model.int8.onnx, the tokenizer and guppy.json into `folder`; refuses a model whose
    ONNX logits are not within 1e-4 of PyTorch's or whose fp32 greedy replies differ."""
    import logging

    write_onnx(model, folder / FP32)
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process
    quantize_int8(folder / FP32, folder / INT8)
    tokenizer.save(folder, model_max_length=model.config.context)
    check = verify(folder, model, tokenizer)
    fp32 = check[FP32]
    if fp32["max_logit_diff"] > 1e-4 or fp32["greedy_same"] != fp32["greedy_prompts"]:
        raise RuntimeError(f"the ONNX graph does not reproduce the model: {fp32}")  # a bug, not the user's
    c = model.config
    meta = {"persona": persona, "model": c.model_dump(), "head_size": c.d_model // c.n_head,
            "special": {"pad": tokenizer.pad_id, "im_start": tokenizer.im_start_id, "im_end": tokenizer.im_end_id},
            "inputs": ["input_ids", "past_keys", "past_values"], "outputs": OUTPUTS, "check": check}
    (folder / "guppy.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta

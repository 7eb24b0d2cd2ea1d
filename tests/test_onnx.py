"""`guppy export --onnx`: onnxruntime gives PyTorch's logits (within 1e-4) and greedy ids, step by
step with the KV cache; its extra output is the reference path's attention; the int8 copy is smaller
and quantized; an existing folder is kept without --overwrite.

onnx, onnxruntime and onnxscript are the `onnx` extra, which CI installs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from guppy.eval.inspect import capture
from guppy.export.onnx import CHECK_PROMPTS, FP32, INT8, OUTPUTS, empty_past, export_onnx, onnx_greedy, session
from guppy.model.checkpoint import load_model
from guppy.model.sampler import generate
from tests.conftest import one_line_error

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'guppy-persona[onnx]'")
pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'guppy-persona[onnx]'")
runner = CliRunner()


@pytest.fixture(scope="module")
def export_command(mini_run, tmp_path_factory):
    """`guppy export --onnx`, run once for the module: its folder, what export_onnx returned to the
    command, and what the command printed."""
    out, returned = tmp_path_factory.mktemp("onnx") / "onnx", []

    def spy(*args, **kwargs):
        returned.append(export_onnx(*args, **kwargs))
        return returned[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("guppy.export.onnx.export_onnx", spy)  # the command imports it when run
        result = runner.invoke(app, ["export", "mini", "--run", str(mini_run), "--onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, returned[0], result.output


@pytest.fixture(scope="module")
def exported(export_command):
    return export_command[:2]


@pytest.fixture(scope="module")
def ours(mini_run):
    model, tokenizer, _ = load_model(mini_run)
    return model, tokenizer


def feeds(ids, keys, values):
    return {"input_ids": np.array([ids], dtype=np.int64), "past_keys": keys, "past_values": values}


def test_fp32_logits_within_1e4_of_pytorch_with_and_without_cache(exported, ours):
    folder, _ = exported
    model, tokenizer = ours
    sess = session(folder / FP32)
    torch.manual_seed(1)
    ids = torch.randint(0, tokenizer.vocab_size, (model.config.context,)).tolist()  # every position
    with torch.no_grad():
        want = model(torch.tensor([ids]))[0][0].numpy()
    keys, values = (t.numpy() for t in empty_past(model.config))
    whole = sess.run(["logits"], feeds(ids, keys, values))[0][0]
    assert np.abs(whole - want).max() < 1e-4
    rows = []  # 10 tokens, then one at a time: the cache must carry the rest
    logits, keys, values = sess.run(OUTPUTS[:3], feeds(ids[:10], keys, values))
    rows.append(logits[0])
    for i in ids[10:]:
        logits, keys, values = sess.run(OUTPUTS[:3], feeds([i], keys, values))
        rows.append(logits[0])
    assert keys.shape[3] == model.config.context
    assert np.abs(np.concatenate(rows) - want).max() < 1e-4


def test_fp32_greedy_ids_are_the_samplers(exported, ours):
    folder, meta = exported
    model, tokenizer = ours
    sess = session(folder / FP32)
    for prompt in CHECK_PROMPTS[:5]:
        ids = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
        want = [int(t[0]) for t in generate(model, [ids], max_new_tokens=48, temperature=0.0, stop_id=tokenizer.im_end_id)]
        assert onnx_greedy(sess, model.config, ids, stop_id=tokenizer.im_end_id) == want
    assert meta["check"][FP32]["greedy_same"] == meta["check"][FP32]["greedy_prompts"] == len(CHECK_PROMPTS)


def test_attention_output_is_the_reference_softmax(exported, ours):
    folder, _ = exported
    model, tokenizer = ours
    ids = tokenizer.encode_prompt([{"role": "user", "content": "are you hungry"}])
    _, steps = capture(model, ids)
    sess = session(folder / FP32)
    keys, values = (t.numpy() for t in empty_past(model.config))
    attention, keys, values = sess.run(["attention", "present_keys", "present_values"], feeds(ids, keys, values))
    want = torch.stack([s["probs"] for s in steps]).numpy()  # (L, nh, T, T)
    assert np.abs(attention[:, 0] - want).max() < 1e-5
    step = sess.run(["attention"], feeds([5], keys, values))[0]  # one more token: one row over T + 1 keys
    assert step.shape == (model.config.n_layer, 1, model.config.n_head, 1, len(ids) + 1)
    assert np.allclose(step.sum(-1), 1, atol=1e-5)


def test_int8_copy_is_quantized_smaller_and_checked(exported, ours):
    folder, meta = exported
    ops = {n.op_type for n in onnx.load(str(folder / INT8)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert (folder / INT8).stat().st_size < 0.8 * (folder / FP32).stat().st_size
    check = json.loads((folder / "guppy.json").read_text())["check"]
    assert check == meta["check"] and check[INT8]["bytes"] == (folder / INT8).stat().st_size
    # The recorded check is onnxruntime's own verdict: recount the int8 greedy replies that equal the sampler's.
    model, tokenizer = ours
    sess, same = session(folder / INT8), 0
    for prompt in CHECK_PROMPTS:
        ids = tokenizer.encode_prompt([{"role": "user", "content": prompt}])
        want = [int(t[0]) for t in generate(model, [ids], max_new_tokens=48, temperature=0.0, stop_id=tokenizer.im_end_id)]
        same += onnx_greedy(sess, model.config, ids, stop_id=tokenizer.im_end_id) == want
    assert check[INT8]["greedy_same"] == same and check[INT8]["greedy_prompts"] == len(CHECK_PROMPTS)
    # int8 rounds the matrices: the logits move, by a small share of their spread (not by all of it)
    with torch.no_grad():
        spread = float(model(torch.tensor([ids]))[0].std())
    assert 0 < check[INT8]["max_logit_diff"] < spread / 4, (check[INT8]["max_logit_diff"], spread)  # measured: 0.11 of 1.6
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}


def test_cli_prints_sizes_and_keeps_an_existing_folder(export_command, mini_run, tmp_path):
    folder, _, printed = export_command
    assert "model.int8.onnx" in printed and " MB" in printed
    out = tmp_path / "o"
    shutil.copytree(folder, out)  # an export of its own (marker and all), holding a file of the user's
    args = ["export", "mini", "--run", str(mini_run), "--onnx", "--out", str(out)]
    (out / "mine.txt").write_text("keep")
    one_line_error(runner.invoke(app, args), str(out), "--overwrite")
    assert (out / "mine.txt").read_text() == "keep"
    one_line_error(runner.invoke(app, [*args, "--web"]), "separate exports")

"""`guppy inspect`: the attention it shows is what the model computed (replaying the captured
probabilities gives the model's own logits), its reply is `guppy chat`'s, its report folder holds
what it says, and bad input is one line, exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import guppy.model.gpt
from cli import app
from guppy.eval.inspect import capture, inspect
from guppy.model.chat import chat
from guppy.model.checkpoint import load_model
from tests.test_export import one_line_error

runner = CliRunner()
PROMPT = "are you hungry now"


@pytest.fixture(scope="module")
def run(mini_run):
    return mini_run


@pytest.fixture(scope="module")
def ours(run):
    model, tokenizer, _ = load_model(run)
    return model, tokenizer


def test_captured_probabilities_reproduce_the_models_output(ours, monkeypatch):
    model, tokenizer = ours
    ids = tokenizer.encode_prompt([{"role": "user", "content": PROMPT}]) + tokenizer.encode("yes. flakes")
    logits, steps = capture(model, ids)
    with torch.no_grad():
        fused = model(torch.tensor([ids]))[0][0]  # the fast path (SDPA), which never saw the hook
    assert not any(b.attn.reference or b.attn.steps is not None for b in model.transformer.h)  # left as it was
    assert (logits - fused).abs().max() < 1e-5

    # Replay: every layer's attention replaced by the captured probabilities times its values.
    layers = iter(steps)
    monkeypatch.setattr(guppy.model.gpt, "reference_attention", lambda q, k, v, mask=None, dropout_p=0.0, steps=None:
                        next(layers)["probs"][None] @ v)
    for block in model.transformer.h:
        block.attn.reference = True
    try:
        with torch.no_grad():
            replayed = model(torch.tensor([ids]))[0][0]
    finally:
        for block in model.transformer.h:
            block.attn.reference = False
    assert (replayed - fused).abs().max() < 1e-5


def test_the_four_steps_are_the_reference_path(ours):
    model, tokenizer = ours
    ids = tokenizer.encode_prompt([{"role": "user", "content": PROMPT}])
    _, steps = capture(model, ids)
    T, hs = len(ids), model.config.d_model // model.config.n_head
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for s in steps:
        assert s["probs"].shape == (model.config.n_head, T, T)
        assert torch.allclose(s["scaled"], s["scores"] / math.sqrt(hs))
        assert torch.isneginf(s["masked"][:, future]).all() and torch.isfinite(s["masked"][:, ~future]).all()
        assert (s["probs"][:, future] == 0).all()
        assert torch.allclose(s["probs"].sum(-1), torch.ones(model.config.n_head, T))


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "report"
    return inspect(persona="mini", run=run, prompt=PROMPT, layer=1, head=2, out=out)


def test_reply_is_guppy_chats_reply(run, report, tmp_path):
    assert report["reply"] == chat(persona="mini", run=run, prompt=PROMPT, temperature=0.0) and report["reply"]
    sampled = inspect(persona="mini", run=run, prompt=PROMPT, temperature=0.8, seed=3, out=tmp_path / "i")
    assert sampled["reply"] == chat(persona="mini", run=run, prompt=PROMPT, temperature=0.8, seed=3)


def test_report_folder_holds_tables_maps_and_charts(run, ours, report):
    model, tokenizer = ours
    out = Path(report["out"])
    saved = json.loads((out / "inspect.json").read_text())
    assert saved["reply"] == report["reply"] and saved["tokens"] == report["tokens"]
    T, c = len(saved["ids"]), model.config
    assert torch.tensor(saved["attention"]).shape == (c.n_layer, c.n_head, T, T)
    assert torch.allclose(torch.tensor(saved["attention"]).sum(-1), torch.ones(c.n_layer, c.n_head, T), atol=1e-3)
    # temperature 0: each reply token is the first of its top 5; the last one ends the turn
    assert all(step["top"][0][0] == step["token"] and step["top"][0][1] == step["p"] for step in saved["top5"])
    assert saved["top5"][-1]["token"] == "<|im_end|>"
    assert len(saved["top5"]) == T - saved["prompt_tokens"] + 1
    assert {"inspect.md", "inspect.json", "attention_grid.png", "steps_L1_H2.png"} <= {p.name for p in out.iterdir()}
    md = (out / "inspect.md").read_text()
    assert report["reply"] in md and "(steps_L1_H2.png)" in md and md.count("\n| ") >= len(saved["top5"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    first = (out / "inspect.json").read_bytes()
    # Again through the command, into its own folder (replaced): the table printed, the same bytes (same seed).
    result = runner.invoke(app, ["inspect", "mini", "--run", str(run), "--prompt", PROMPT, "--layer", "1",
                                 "--head", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "what it could have said" in result.output and "inspect.md" in result.output
    assert (out / "inspect.json").read_bytes() == first


def test_persona_word_shows_where_each_head_looks(ours, report):
    model, _ = ours
    word = report["persona_word"]
    assert word is not None and word["word"] in report["reply"] and word["word"] in ["food", "flakes", "pellets"]
    assert word["writes"].strip("␣") in word["word"]  # the row's next token starts the word
    assert len(word["heads"]) == model.config.n_layer * model.config.n_head
    assert all(0 < h["prompt_share"] <= 1.0001 and len(h["top"]) == 3 for h in word["heads"])
    assert (Path(report["out"]) / "persona_word.png").exists()


@pytest.mark.parametrize("args, needles", [
    (["--layer", "9"], ["--layer 9", "layers 0 to"]),
    (["--head", "-1"], ["--head -1", "heads 0 to 3"]),
    (["--prompt", "food " * 80], ["--prompt", "tokens", "shorten it"]),
])
def test_bad_input_is_one_line(run, tmp_path, args, needles):
    base = ["inspect", "mini", "--run", str(run), "--prompt", PROMPT, "--out", str(tmp_path / "x")]
    one_line_error(runner.invoke(app, base + args), *needles)
    assert not (tmp_path / "x").exists()


def test_without_a_run_is_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["inspect", "mini", "--run", str(tmp_path / "none"), "--prompt", "hi"]),
                   "no trained model", "guppy train")


def test_a_folder_it_did_not_write_is_kept(run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = runner.invoke(app, ["inspect", "mini", "--run", str(run), "--prompt", "hi", "--out", str(tmp_path / "mine")])
    one_line_error(result, "not a folder Guppy made")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"

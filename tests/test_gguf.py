"""`guppy export --gguf`: llama.cpp (node-llama-cpp, which .ci/run installs) reads a tiny ReLU and a
tiny GELU model as torch does, and a Japanese model's character-level tokenizer as its SentencePiece
one, to our ids; the metadata and the Modelfile say what a chat app needs; a prompt that would reach
the context is refused before llama.cpp sees it; bad input is one line, exit 2."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from guppy.export import gguf as export_gguf, gguf_check
from guppy.model.checkpoint import load_model
from guppy.export.gguf import SCALE, as_gelu, export_gguf as run_export
from guppy.store.paths import RunPaths
from guppy.errors import GuppyError
from guppy.model.tokenizer import BYTE_TOKENS, CHAT_TEMPLATE, train_tokenizer
from tests.test_export import one_line_error

gguf = pytest.importorskip("gguf")
runner = CliRunner()
llama = pytest.mark.skipif(gguf_check.runtime_missing() is not None,
                           reason=f"llama.cpp runtime: {gguf_check.runtime_missing()}; {gguf_check.INSTALL}")


@pytest.fixture(scope="module")
def relu_f16(mini_relu_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf") / "gguf"
    return out, run_export(persona="mini", run=mini_relu_run, out=out)


@llama
def test_relu_model_round_trips_through_llama_cpp_at_f16(relu_f16):
    _, meta = relu_f16
    c = meta["llama_cpp"]
    assert meta["type"] == "f16" and meta["activation"] == "relu" and meta["residual_scale"] == SCALE
    assert c["tokens_same"] == c["chats"] == 20  # the mini data's whole test split
    assert c["greedy_same"] == c["prompts"] == 10 and c["top1"] == 1.0
    assert c["max_logit_diff"] < 0.05 and meta["not_verified"] is None


@llama
def test_gelu_model_is_written_as_is_and_matches_at_f32_and_q8_0(mini_run, tmp_path):
    f32 = run_export(persona="mini", run=mini_run, out=tmp_path / "a", kind="f32")
    q8 = run_export(persona="mini", run=mini_run, out=tmp_path / "b", kind="q8_0")
    assert f32["residual_scale"] == 1 and f32["rewrite"]["max_logit_diff"] == 0
    assert f32["llama_cpp"]["greedy_same"] == 10 and f32["llama_cpp"]["max_logit_diff"] < 0.01
    assert q8["llama_cpp"]["top1"] >= 0.95 and q8["bytes"] < 0.4 * f32["bytes"]


@llama
def test_a_relu_model_written_without_the_rewrite_is_what_llama_cpp_gets_wrong(mini_relu_run, tmp_path):
    """The rewrite is what makes it exact: the same weights read as GELU move the logits by far more."""
    model, tokenizer, _ = load_model(mini_relu_run)
    path = tmp_path / "plain.gguf"
    export_gguf.write_gguf(path, model, tokenizer, kind="f32", scale=1.0, persona={"name": "mini", "description": ""})
    chats, _ = gguf_check.held_out_chats(RunPaths(mini_relu_run), n=5)
    check = gguf_check.llama_check(path, model, tokenizer, chats, gguf_check.check_prompts(model, tokenizer, chats))
    assert check["max_logit_diff"] > 0.1


def test_the_rewrite_computes_the_relu_model_with_values_scale_times_larger(mini_relu_run):
    model, _, _ = load_model(mini_relu_run)
    gelu, scale = as_gelu(model)
    assert gelu.config.activation == "gelu" and scale == SCALE
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, model.config.context))
    with torch.no_grad():
        assert (model(ids)[0] - gelu(ids)[0]).abs().max() < 0.01
    assert torch.equal(gelu.transformer.wte.weight, model.transformer.wte.weight * SCALE)
    assert model.config.activation == "relu" and model.transformer.ln_f.eps == 1e-5  # the model is untouched


def test_metadata_holds_the_tokenizer_template_persona_and_sampling(relu_f16, mini_relu_run):
    folder, meta = relu_f16
    _, tokenizer, _ = load_model(mini_relu_run)
    fields = gguf.GGUFReader(str(folder / "mini.gguf")).fields

    def value(key):
        f = fields[key]
        v = f.parts[f.data[0]]
        return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0]

    assert value("general.architecture") == "gpt2" and value("general.name") == "mini"
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "gpt-2"
    assert value("tokenizer.chat_template") == CHAT_TEMPLATE and not value("tokenizer.ggml.add_bos_token")
    assert value("tokenizer.ggml.eos_token_id") == value("tokenizer.ggml.eot_token_id") == tokenizer.im_end_id
    assert value("gpt2.context_length") == 64 and value("general.sampling.temp") == pytest.approx(0.8)
    assert value("gpt2.attention.layer_norm_epsilon") == pytest.approx(1e-5 * SCALE ** 2)
    types = fields["tokenizer.ggml.token_type"]
    control = [i for i, k in enumerate(types.data) if types.parts[k][0] == gguf.TokenType.CONTROL]
    assert control == [tokenizer.pad_id, tokenizer.im_start_id, tokenizer.im_end_id]
    assert len(fields["tokenizer.ggml.tokens"].data) == tokenizer.vocab_size


def test_modelfile_parses_into_ollama_directives(relu_f16):
    folder, _ = relu_f16
    text = (folder / "Modelfile").read_text()
    directives = re.findall(r'^(FROM|TEMPLATE|PARAMETER) ("""[\s\S]*?"""|.+)$', text, flags=re.M)
    assert "".join(f"{d} {v}\n" for d, v in directives) == text  # every line belongs to a directive
    params = [v.split(" ", 1) for d, v in directives if d == "PARAMETER"]
    assert ["stop", '"<|im_end|>"'] in params and ["num_ctx", "64"] in params and ["top_k", "0"] in params
    assert dict(params)["temperature"] == "0.8" and dict(params)["top_p"] == "0.95"
    assert (folder / directives[0][1].removeprefix("./")).is_file() and directives[0][0] == "FROM"
    template = dict(directives)["TEMPLATE"]
    assert "<|im_start|>assistant\n" in template and ".System" not in template and 'ne .Role "system"' in template


def test_a_prompt_that_reaches_the_context_is_refused_before_llama_cpp(relu_f16, mini_relu_run):
    model, tokenizer, _ = load_model(mini_relu_run)
    folder, _ = relu_f16
    with pytest.raises(gguf_check.GuppyError, match="context of 64"):
        gguf_check.llama_run(folder / "mini.gguf", model.config, texts=[], prompts=[[5] * 64], stop_id=2)


@llama
def test_the_node_script_refuses_it_too_instead_of_aborting(relu_f16):
    folder, _ = relu_f16
    request = {"model": str(folder / "mini.gguf"), "context": 64, "texts": [], "prompts": [[5] * 64],
               "max_new_tokens": 8, "stop_id": 2, "vocab_size": 400}
    done = subprocess.run(["node", str(gguf_check.RUNTIME / "check.mjs")], input=json.dumps(request),
                          capture_output=True, text=True, cwd=gguf_check.RUNTIME)
    assert done.returncode == 2 and "context holds 64" in json.loads(done.stdout)["error"]


@llama
def test_a_request_larger_than_a_pipe_holds_is_read_whole(relu_f16, mini_relu_run):
    """A few thousand chats to tokenize make a request of megabytes; node's readFileSync(0) failed there with
    EAGAIN (check.mjs reads stdin as a stream now)."""
    from guppy.model.checkpoint import load_model

    folder, _ = relu_f16
    model, tokenizer, _ = load_model(mini_relu_run)
    texts = [f"user says {i} and the fish answers {i * 7} times" for i in range(30_000)]
    out = gguf_check.llama_run(folder / "mini.gguf", model.config, texts=texts, prompts=[], stop_id=2)
    assert len(json.dumps(texts)) > 1_000_000 and len(out["tokenized"]) == len(texts)
    assert out["tokenized"][-1] == tokenizer.encode(texts[-1])  # read to its end, every text whole


def test_without_the_runtime_the_file_is_written_and_says_how_to_verify(mini_relu_run, tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_check, "runtime_missing", lambda: "node is not installed")
    monkeypatch.setattr(export_gguf, "F16_MAX", 100.0)  # this model's values then do not fit in f16
    result = runner.invoke(app, ["export", "mini", "--run", str(mini_relu_run), "--gguf", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "writing f32 instead" in text and "not verified with llama.cpp" in text and "npm install" in text
    meta = json.loads((tmp_path / "g" / "guppy.json").read_text())
    assert meta["type"] == "f32" and meta["llama_cpp"] is None and (tmp_path / "g" / "mini.gguf").is_file()


def test_bad_input_is_one_line(mini_relu_run, tmp_path):
    args = ["export", "mini", "--run", str(mini_relu_run), "--gguf"]
    one_line_error(runner.invoke(app, [*args, "--type", "q3_k"]), "q3_k", "f16, q8_0, f32")
    (tmp_path / "empty").mkdir()
    empty = ["export", "mini", "--run", str(tmp_path / "empty"), "--gguf"]
    one_line_error(runner.invoke(app, empty), "no trained model")
    (tmp_path / "file").write_text("mine")
    one_line_error(runner.invoke(app, [*args, "--out", str(tmp_path / "file")]), "is a file")
    one_line_error(runner.invoke(app, [*args, "--onnx"]), "separate exports")
    assert (tmp_path / "file").read_text() == "mine"


def test_a_type_that_loses_the_replies_is_refused_and_nothing_is_written(mini_relu_run, tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_check, "runtime_missing", lambda: None)
    worse = {"tokens_same": 20, "chats": 20, "greedy_same": 3, "prompts": 10, "top1": 0.81, "steps": 100,
             "max_logit_diff": 1.5}
    monkeypatch.setattr(gguf_check, "llama_check", lambda *a, **k: worse)
    out = tmp_path / "g"
    args = ["export", "mini", "--run", str(mini_relu_run), "--gguf", "--type", "q8_0", "--out", str(out)]
    one_line_error(runner.invoke(app, args), "--type q8_0", "81.0%", "try --type f16")
    assert not out.exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------ a language written without spaces


@pytest.fixture(scope="module")
def kana_f32(kana_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf-kana") / "gguf"
    return out, run_export(persona="medaka", run=kana_run, out=out, kind="f32")


def merged_in_the_other_order(tokenizer) -> list[str]:
    """Texts abc where the merges made bc before ab and abc is no token: BPE gives a + bc; a tokenizer
    that joined the leftmost pair first (SPM with every score equal) would give ab + c."""
    merges = json.loads(tokenizer.tokenizer.to_str())["model"]["merges"]
    rank = {a + b: r for r, (a, b) in enumerate(merges)}
    vocab = tokenizer.tokenizer.get_vocab()
    return [a + b + c for b, c in merges for a, left in merges
            if left == b and len(a + b + c) == 3 and (a + b + c).isalpha() and rank[b + c] < rank[a + b]
            and a + b + c not in vocab]


def llama_tokens(path, model, texts: list[str]) -> list[list[int]]:
    return gguf_check.llama_run(path, model.config, texts=texts, prompts=[], stop_id=2)["tokenized"]


@llama
def test_a_character_level_tokenizer_is_read_by_llama_cpp_as_ours(kana_f32, kana_run):
    folder, meta = kana_f32
    c = meta["llama_cpp"]
    assert c["tokens_same"] == c["chats"] == 21 and c["greedy_same"] == c["prompts"] == 10  # held-out chats, f32
    model, tokenizer, _ = load_model(kana_run)
    order = merged_in_the_other_order(tokenizer)[:3]
    # 鯨 and 😀 are in no conversation: bytes, in ours and in llama.cpp's; spaces are "▁" in the file
    texts = ["鯨がすき😀", "金魚 です  ね\n", "<|im_start|>user\nhi 鯨<|im_end|>\n", *order]
    ours = [tokenizer.encode_chat([{"role": "user", "content": "hi 鯨"}])[0] if "<|" in t else tokenizer.encode(t)
            for t in texts]
    bytes_ids = {tokenizer.tokenizer.token_to_id(b) for b in BYTE_TOKENS}
    assert len(order) == 3 and sum(i in bytes_ids for i in ours[0]) == 7  # 3 bytes for 鯨, 4 for 😀
    assert llama_tokens(folder / "medaka.gguf", model, texts) == ours


@llama
def test_the_scores_are_what_make_it_exact(kana_run, tmp_path, monkeypatch):
    """The same vocabulary with every score equal: llama.cpp then joins the leftmost pair first."""
    model, tokenizer, _ = load_model(kana_run)
    order = merged_in_the_other_order(tokenizer)[:3]
    keep = gguf.GGUFWriter.add_token_scores
    monkeypatch.setattr(gguf.GGUFWriter, "add_token_scores", lambda self, scores: keep(self, [0.0] * len(scores)))
    path = tmp_path / "equal.gguf"
    export_gguf.write_gguf(path, model, tokenizer, kind="f32", scale=1.0, persona={"name": "m", "description": ""})
    got = llama_tokens(path, model, order)
    assert all(a != tokenizer.encode(t) and len(a) == 2 for a, t in zip(got, order))


def test_character_level_metadata_is_sentencepiece_with_byte_tokens(kana_f32, kana_run):
    folder, _ = kana_f32
    _, tokenizer, _ = load_model(kana_run)
    fields = gguf.GGUFReader(str(folder / "medaka.gguf")).fields
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "llama"
    assert fields["tokenizer.ggml.add_space_prefix"].parts[-1][0] == 0 and "tokenizer.ggml.merges" not in fields
    f = fields["tokenizer.ggml.tokens"]
    tokens = [bytes(f.parts[k]).decode() for k in f.data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[k][0]) for k in fields["tokenizer.ggml.token_type"].data]
    scores = [float(fields["tokenizer.ggml.scores"].parts[k][0]) for k in fields["tokenizer.ggml.scores"].data]
    assert [i for i, k in enumerate(types) if k == gguf.TokenType.BYTE] == [tokenizer.tokenizer.token_to_id(b)
                                                                          for b in BYTE_TOKENS]
    assert [i for i, k in enumerate(types) if k == gguf.TokenType.CONTROL] == [0, 1, 2]
    assert " " not in "".join(tokens) and tokens[tokenizer.tokenizer.token_to_id(" ")] == "\u2581"
    a, b = json.loads(tokenizer.tokenizer.to_str())["model"]["merges"][5]
    assert scores[tokenizer.tokenizer.token_to_id(a + b)] == -5  # the sixth merge
    assert len(tokens) == tokenizer.vocab_size


def test_a_vocabulary_holding_the_sentencepiece_space_is_refused():
    tokenizer = train_tokenizer(["金魚は▁えさがすき。", "きょうも▁げんき。"] * 20, vocab_size=300)
    with pytest.raises(GuppyError, match="U\\+2581"):
        export_gguf.tokenizer_kind(tokenizer)


def test_f16_may_part_from_torch_only_at_a_near_tie():
    """A reply that parts where torch's top two logits were closer than the type's own error is not a wrong file;
    one that parts at a wider gap is. (kingyo's f16 parted at a gap of 1.1e-3, its error 4.1e-3; a GELU guppy's f32
    too, as ggml's GELU reads a float16 table.)"""
    check = {"tokens_same": 100, "chats": 100, "greedy_same": 9, "prompts": 10, "top1": 0.99}
    tie = {**check, "max_logit_diff": 4.1e-3, "near_ties": sum(g < gguf_check.near_tie(4.1e-3) for g in [1.1e-3])}
    wide = {**check, "max_logit_diff": 4.1e-3, "near_ties": sum(g < gguf_check.near_tie(4.1e-3) for g in [0.3])}
    assert gguf_check.passes("f16", tie) and not gguf_check.passes("f16", wide)
    assert gguf_check.passes("f32", tie) and not gguf_check.passes("f32", wide)
    assert gguf_check.near_tie(2.5) == gguf_check.NEAR_TIE  # a wrong file's large error excuses nothing wide
    assert not gguf_check.passes("f16", {**tie, "tokens_same": 99})

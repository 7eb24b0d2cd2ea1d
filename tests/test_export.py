"""`guppy export`: the folder loads offline with transformers and behaves as guppy's own model
(same prompt ids, logits, greedy reply), its card's code runs, the dataset folder loads with
`datasets`, and bad inputs are one line, exit 2, with nothing overwritten.

transformers is the `hf` extra, which CI installs: imported here, never by guppy itself.
The mini persona's data and a tiny model trained a few steps on it are shared by the tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from cli import app
from guppy.export.hf import export
from guppy.model.checkpoint import load_model, save_checkpoint
from guppy.model.gpt import GPT, ModelConfig
from guppy.model.sampler import generate
from guppy.store.paths import RunPaths
from tests.trained import copy_of_run

transformers = pytest.importorskip("transformers", reason="needs the hf extra: pip install 'guppy-persona[hf]'")
AutoModelForCausalLM, AutoTokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
runner = CliRunner()
CHAT = [{"role": "user", "content": "are you hungry now"}]


@pytest.fixture(scope="module")
def run(mini_run, tmp_path_factory) -> Path:
    """A copy of the session's trained mini run (tests/trained.py), so that exports to the default
    folders (runs/mini/hf, hf-dataset) stay in this module's own tmp folder."""
    return copy_of_run(mini_run, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(run) -> tuple[Path, Path]:
    model, dataset = export(persona="mini", run=run, dataset=True)
    assert (model, dataset) == (run / "hf", run / "hf-dataset")
    return model, dataset


@pytest.fixture(scope="module")
def ours(run):
    model, tokenizer, _ = load_model(run)
    return model, tokenizer


@pytest.fixture(scope="module")
def theirs(exported):
    return AutoModelForCausalLM.from_pretrained(exported[0]).eval(), AutoTokenizer.from_pretrained(exported[0])


def greedy(model, prompt: list[int], stop_id: int, n: int = 20) -> list[int]:
    """guppy's sampler at temperature 0, up to and including the stop token."""
    return torch.stack(list(generate(model, [prompt], max_new_tokens=n, temperature=0.0, stop_id=stop_id)),
                       dim=1)[0].tolist()


def test_folder_is_a_gpt2_model_with_tied_head_and_chat_tokens(exported, theirs, ours):
    hf, tok = theirs
    names = {p.name for p in exported[0].iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "README.md"} <= names
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied, as ours
    assert sum(p.numel() for p in hf.parameters()) == ours[0].num_params()
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|pad|>")
    assert hf.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


def test_chat_template_gives_guppys_prompt_ids(theirs, ours):
    _, tok = theirs
    _, tokenizer = ours
    for chat in (CHAT, [*CHAT, {"role": "assistant", "content": " food. flakes!"}, {"role": "user", "content": "how are you"}]):
        ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"]
        assert ids == tokenizer.encode_prompt(chat)


def test_same_logits_and_same_greedy_reply(theirs, ours):
    hf, tok = theirs
    model, tokenizer = ours
    inputs = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = inputs["input_ids"][0].tolist()
    mine = greedy(model, prompt, tokenizer.im_end_id)
    out = hf.generate(**inputs, do_sample=False, max_new_tokens=20)
    assert out[0, len(prompt):].tolist() == mine
    assert mine[-1] == tokenizer.im_end_id  # both stopped at the end of the turn, at the same token
    assert re.search("[a-z]", tokenizer.decode(mine))  # words, not a run of dots

    torch.manual_seed(0)  # the chat and a full context of random ids: every position embedding
    for ids in (torch.tensor([prompt + mine]), torch.randint(0, tokenizer.vocab_size, (2, model.config.context))):
        with torch.no_grad():
            diff = (model(ids)[0] - hf(ids).logits).abs().max().item()
        assert diff < 1e-4, diff


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_either_activation_exports_exactly(tmp_path, ours, activation):
    """The presets are GELU and older runs ReLU: an untrained model of each must map onto a GPT-2 activation."""
    tokenizer = ours[1]
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context=32, n_layer=2, n_head=2, d_model=32, d_ff=64,
                            activation=activation)).eval()
    save_checkpoint(RunPaths(tmp_path).best, model=model, tokenizer=tokenizer, meta={"model": model.config.model_dump()})
    folder, = export(persona="fish", run=tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, tokenizer.vocab_size, (2, 32))
    with torch.no_grad():
        assert (model(ids)[0] - hf(ids).logits).abs().max().item() < 1e-4


def test_pipeline_chats(exported, ours):
    model, tokenizer = ours
    chat = transformers.pipeline("text-generation", model=str(exported[0]))
    out = chat(CHAT, max_new_tokens=20, do_sample=False)[0]["generated_text"]
    assert out[:-1] == CHAT and out[-1]["role"] == "assistant"
    reply = out[-1]["content"]
    assert isinstance(reply, str) and reply.strip()
    expected = greedy(model, tokenizer.encode_prompt(CHAT), tokenizer.im_end_id)
    assert reply.strip() == tokenizer.decode(expected).strip()
    transformers.set_seed(0)
    assert chat(CHAT, max_new_tokens=20)[0]["generated_text"][-1]["content"].strip()  # sampled: the card's defaults


def test_model_card_has_hub_header_and_its_code_runs(exported, capsys):
    card = (exported[0] / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-generation"
    assert "mini" in header["tags"] and "a tiny test fish." in card and "Not evaluated yet" in card
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    assert len(blocks) == 2
    for code in blocks:
        transformers.set_seed(0)
        exec(code.replace("PATH", str(exported[0])), {})
        assert capsys.readouterr().out.strip()


def test_dataset_folder_loads_with_datasets(exported, run, tmp_path):
    import datasets

    folder = exported[1]
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["test-00000-of-00001.parquet",
                                                                   "train-00000-of-00001.parquet"]
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"},
                                                  {"split": "test", "path": "data/test-*.parquet"}]
    assert (folder / "persona.yaml").exists() and "# mini: synthetic persona conversations" in card
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    original = datasets.load_from_disk(str(run / "data"))
    for split in ("train", "test"):
        assert loaded[split].to_list() == original[split].to_list()
    assert loaded["train"].features == original["train"].features  # the topic ClassLabel survives


# ---------------------------------------------------------------------------------- bad inputs

def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(n in lines[0] for n in needles), result.output


def test_run_without_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["export", "mini", "--run", str(tmp_path / "empty")])
    one_line_error(result, "no trained model in", "guppy train")
    assert list((tmp_path / "empty").iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(run, tmp_path):
    copy = tmp_path / "mini"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("hf", "hf-dataset"))
    (copy / "eval").mkdir()
    (copy / "eval" / "report.json").write_text(json.dumps(fake_report()))
    out = tmp_path / "out"
    args = ["export", "mini", "--run", str(copy), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    (out / "README.md").write_text("the first export")

    one_line_error(runner.invoke(app, args), str(out), "--overwrite")
    assert (out / "README.md").read_text() == "the first export"

    result = runner.invoke(app, [*args, "--dataset", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "README.md").read_text() != "the first export" and (out / "config.json").exists()
    assert (tmp_path / "out-dataset" / "README.md").exists()
    card = (out / "README.md").read_text()
    assert "Persona score 0.42" in card and "| food | 5% | **40%** | 90% |" in card
    assert "**persona 0.42 [0.30-0.50] · on-topic 0.61" in card  # the headline line, first of the results

    # A new model folder whose dataset folder exists: refused before anything is written.
    (tmp_path / "new-dataset").mkdir()
    one_line_error(runner.invoke(app, [*args[:-1], str(tmp_path / "new"), "--dataset"]), "new-dataset", "--overwrite")
    assert not (tmp_path / "new").exists()


def fake_report() -> dict:
    """The fields of `guppy eval`'s report.json that the model card shows."""
    return {"headline": "persona 0.42 [0.30-0.50] · on-topic 0.61 · novel 97% · 4th turn 0.90 of the 1st",
            "persona_score": 0.42, "associations": {"food": {"hit_rate": {"model": 0.4, "floor": 0.05, "ceiling": 0.9}}},
            "bits_per_byte": {"model": 1.234, "floor": 8.0}, "style": {"model": {"all": 0.8}, "ceiling": {"all": 1.0}}}

"""`guppy chat`: one-shot replies are reproducible, the REPL streams the same reply, keeps its
history inside the context, and ends cleanly on quit, Ctrl-D and Ctrl-C."""

from __future__ import annotations

import builtins

import pytest
import torch

from guppy.errors import GuppyError
from guppy.model.chat import chat, trim_history
from guppy.model.checkpoint import save_checkpoint
from guppy.model.gpt import GPT, ModelConfig
from guppy.store.paths import RunPaths
from tests.test_data import fish_corpus


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained model in a run folder: enough to test the plumbing, and fast."""
    from guppy.model.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([m["content"] for c in fish_corpus() for m in c], vocab_size=400)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context=48, n_layer=1, n_head=2, d_model=32, d_ff=64))
    root = tmp_path_factory.mktemp("runs") / "fish"
    save_checkpoint(RunPaths(root).best, model=model, tokenizer=tokenizer, meta={"model": model.config.model_dump()})
    return root


def typed(monkeypatch, *lines):
    """Feed `input()` these lines; an exception class is raised instead of returned."""
    feed = iter(lines)

    def fake_input(prompt=""):
        print(prompt, end="")
        line = next(feed)
        if isinstance(line, type) and issubclass(line, BaseException):
            raise line
        return line

    monkeypatch.setattr(builtins, "input", fake_input)


def test_one_shot_same_seed_same_reply(run, capsys):
    first = chat(persona="fish", run=run, prompt="what is the meaning of life", seed=7)
    second = chat(persona="fish", run=run, prompt="what is the meaning of life", seed=7)
    assert first == second and first
    assert capsys.readouterr().out == f"{first}\n{second}\n"


def test_one_shot_temperature_zero_ignores_the_seed(run):
    a = chat(persona="fish", run=run, prompt="hi", temperature=0.0, seed=1)
    assert a == chat(persona="fish", run=run, prompt="hi", temperature=0.0, seed=2)


def test_repl_streams_the_same_reply_as_one_shot_and_ends_on_quit(run, monkeypatch, capsys):
    reply = chat(persona="fish", run=run, prompt="how are you", seed=3, max_new_tokens=20)
    capsys.readouterr()
    typed(monkeypatch, "how are you", "quit", "never read")
    assert chat(persona="fish", run=run, prompt=None, seed=3, max_new_tokens=20) is None
    out = capsys.readouterr().out
    assert f"fish: {reply}\n" in out


@pytest.mark.parametrize("ending", [EOFError, KeyboardInterrupt, "exit"])
def test_repl_ends_cleanly_on_ctrl_d_ctrl_c_and_exit(run, monkeypatch, capsys, ending):
    typed(monkeypatch, "hello", "", ending)
    assert chat(persona="fish", run=run, prompt=None, seed=0) is None
    assert capsys.readouterr().out.count("you: ") == 3


def test_history_is_trimmed_to_fit_the_context(run):
    from guppy.model.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.load(RunPaths(run).best)
    history = [{"role": r, "content": f"message number {i} about flakes and pellets"}
               for i, r in zip(range(13), ["user", "assistant"] * 7)]
    kept = trim_history(history, tokenizer, budget=150)
    assert len(tokenizer.encode_prompt(kept)) <= 150 and kept[-1] == history[-1] and len(kept) < len(history)
    assert kept[0]["role"] == "user"
    assert trim_history(history[-1:], tokenizer, budget=1) == history[-1:]  # the newest message always stays


def test_chat_without_a_trained_model_says_to_train(tmp_path):
    with pytest.raises(GuppyError, match="no trained model in .*; run `guppy train"):
        chat(persona="fish", run=tmp_path / "nothing", prompt="hi")

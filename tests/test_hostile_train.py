"""A fresh `train` over a run never costs the old run before it has something to replace it with;
wrong options are refused before anything is read or written; eval and compare read the dataset
the run was trained on, and refuse (never score 0.00) without one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.errors import GuppyError
from guppy.model.checkpoint import load_model
from guppy.model.tokenizer import ChatTokenizer
from guppy.train.trainer import train
from tests.conftest import one_line_error, write_persona
from tests.test_data import write_jsonl
from tests.test_train import FAST, MICRO, ROOT
from tests.test_train import corpus, micro_preset  # noqa: F401 (fixtures, shared with the trainer's tests)

runner = CliRunner()


@pytest.fixture(scope="module")
def old_run(tmp_path_factory, corpus) -> Path:
    """A finished 40-step run: the user's good model (copy it to change it)."""
    run = tmp_path_factory.mktemp("old") / "fish"
    train(persona="fish", data=corpus, out=run, max_steps=40, **FAST)
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "fish"
    shutil.copytree(run, copy)
    return copy


def fingerprints(run: Path) -> tuple:
    model_bytes = (run / "ckpt" / "best" / "model.safetensors").read_bytes()
    return ChatTokenizer.load(run / "tokenizer").fingerprint(), model_bytes, (run / "metrics.jsonl").read_text()


FRESH_RUN_KILLED = """
import os, signal, sys
sys.path.insert(0, {root!r})
from guppy import presets
from guppy.train import trainer as t
presets.PRESETS["micro"] = {micro!r}
real_lr_at = t.lr_at

def lr_at(step, cfg):
    if step == {at}:
        os.kill(os.getpid(), signal.{signal})
    return real_lr_at(step, cfg)

t.lr_at = lr_at
t.train(persona="fish", data={data!r}, out={out!r}, max_steps=60, **{fast!r})
"""


def fresh_run(run: Path, data: Path, *, at: int, signal: str, seed: int = 7) -> subprocess.CompletedProcess:
    script = FRESH_RUN_KILLED.format(root=str(ROOT), micro=MICRO, at=at, signal=signal, data=str(data), out=str(run),
                                     fast={**FAST, "seed": seed, "vocab_size": 420})
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_a_fresh_run_killed_midway_leaves_the_old_run_whole(tmp_path, old_run, corpus):
    run = copy_of(old_run, tmp_path)
    before = fingerprints(run)
    done = fresh_run(run, corpus, at=25, signal="SIGKILL")  # after its first checkpoints (every 20 steps)
    assert done.returncode == -9, done.stderr[-2000:]
    assert fingerprints(run) == before
    load_model(run)  # the old model loads, and the old run still resumes
    train(persona="fish", data=corpus, out=run, max_steps=50, resume=True, **FAST)
    assert not list(tmp_path.glob(".fish.*"))  # the dead run's folder went with the next write


def test_a_fresh_run_refused_for_bad_data_keeps_the_old_tokenizer_and_resume(tmp_path, old_run):
    run = copy_of(old_run, tmp_path)
    before = fingerprints(run)
    no_replies = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": f"hi {i}"}]}
                                                       for i in range(200)])
    with pytest.raises(GuppyError, match="no assistant reply to learn from"):
        train(persona="fish", data=no_replies, out=run, max_steps=40, **FAST)
    assert fingerprints(run) == before
    assert not list(tmp_path.glob(".fish.*"))


def test_a_fresh_run_that_finishes_replaces_the_old_one(tmp_path, old_run, corpus):
    run = copy_of(old_run, tmp_path)
    before = fingerprints(run)
    summary = train(persona="fish", data=corpus, out=run, max_steps=20, **{**FAST, "seed": 3, "vocab_size": 420})
    assert (summary["run"], summary["best"]) == (str(run), str(run / "ckpt" / "best"))  # not the staging folder
    after = fingerprints(run)
    assert after[0] != before[0] and after[1] != before[1]
    assert json.loads((run / "ckpt" / "last" / "trainer_state.json").read_text())["step"] == 20
    assert not list(tmp_path.glob(".fish.*"))


def test_ctrl_c_of_a_fresh_run_says_how_to_resume_it_with_its_own_options(tmp_path, old_run, corpus):
    run = copy_of(old_run, tmp_path)
    done = fresh_run(run, corpus, at=27, signal="SIGINT")
    assert "interrupted at step 27" in done.stderr, done.stderr[-2000:]
    hint = " ".join(done.stderr.split())
    assert f"guppy train fish --data {corpus} --out {run}" in hint and "--resume" in hint
    assert json.loads((run / "ckpt" / "last" / "trainer_state.json").read_text())["step"] == 27
    train(persona="fish", data=corpus, out=run, max_steps=60, resume=True, **{**FAST, "seed": 7, "vocab_size": 420})


def test_resume_with_max_steps_below_the_checkpoint_is_refused(tmp_path, old_run, corpus):
    run = copy_of(old_run, tmp_path)
    with pytest.raises(GuppyError, match="already at step 40; pass a larger --max-steps"):
        train(persona="fish", data=corpus, out=run, max_steps=30, resume=True, **FAST)


def test_a_dataset_with_no_assistant_turn_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"},
                                                            {"role": "system", "content": "x"}]} for i in range(100)])
    with pytest.raises(GuppyError, match="no assistant reply"):
        train(persona="fish", data=data, out=tmp_path / "r", max_steps=20, **FAST)
    assert not (tmp_path / "r").exists()


def test_null_messages_are_refused(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"},
                                                            {"role": "assistant", "content": None}]} for i in range(100)])
    with pytest.raises(GuppyError, match="without a role or a content"):
        train(persona="fish", data=data, out=tmp_path / "r", max_steps=20, **FAST)


# ---------------------------------------------------------------------------------- guppy run, eval, compare

def test_run_with_a_bad_preset_or_steps_leaves_the_data_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    persona = write_persona(tmp_path)
    assert runner.invoke(app, ["generate-data", str(persona), "--n", "100", "--num-proc", "1"]).exit_code == 0
    data = tmp_path / "runs" / "mini" / "data"
    before = (data / "train" / "dataset_info.json").read_bytes(), (data / "persona.yaml").stat().st_mtime_ns
    one_line_error(runner.invoke(app, ["run", str(persona), "--preset", "NOSUCH", "--n", "100"]), "is not one of")
    one_line_error(runner.invoke(app, ["run", str(persona), "--max-steps", "0", "--n", "100"]), "max_steps")
    one_line_error(runner.invoke(app, ["run", str(persona), "--n", "-3"]), "'--n'")
    assert ((data / "train" / "dataset_info.json").read_bytes(), (data / "persona.yaml").stat().st_mtime_ns) == before


@pytest.fixture(scope="module")
def run_on_elsewhere(tmp_path_factory):
    """mini's data generated to another folder, trained with --data there: runs/mini has no data/."""
    from pipeline.generate import generate_data

    root = tmp_path_factory.mktemp("elsewhere")
    persona = write_persona(root)
    elsewhere = root / "datasets" / "mini-v1"
    generate_data(persona=persona, n=300, out=elsewhere)
    run = root / "runs" / "mini"
    train(persona=str(persona), data=elsewhere, out=run, max_steps=20, **FAST)
    return persona, run, elsewhere


def test_eval_reads_the_dataset_the_run_was_trained_on(run_on_elsewhere):
    from guppy.eval.commands import evaluate

    persona, run, elsewhere = run_on_elsewhere
    assert not (run / "data").exists()
    report = evaluate(persona=str(persona), run=run, samples=1)
    assert report["bits_per_byte"]["model"] > 0 and (run / "eval" / "report.json").exists()


def test_eval_names_the_recorded_dataset_when_it_is_gone(tmp_path, run_on_elsewhere):
    persona, run, elsewhere = run_on_elsewhere
    copy = tmp_path / "mini"
    shutil.copytree(run, copy)
    config = json.loads((copy / "train_config.json").read_text())
    config["data"] = str(tmp_path / "gone")
    (copy / "train_config.json").write_text(json.dumps(config))
    one_line_error(runner.invoke(app, ["eval", str(persona), "--run", str(copy)]), "gone", "train_config.json records")


def test_eval_with_nonsense_samples_keeps_the_good_report(run_on_elsewhere):
    persona, run, _ = run_on_elsewhere
    (run / "eval").mkdir(exist_ok=True)
    report = run / "eval" / "report.json"
    if not report.exists():  # alone, no earlier test has evaluated this run: stand in for its report
        report.write_text('{"persona_score": 0.5}\n')
    before = report.read_bytes()
    one_line_error(runner.invoke(app, ["eval", str(persona), "--run", str(run), "--samples", "-2"]), "--samples -2")
    assert report.read_bytes() == before


def test_compare_refuses_a_run_without_its_dataset(tmp_path, monkeypatch, run_on_elsewhere):
    persona, run, _ = run_on_elsewhere
    monkeypatch.chdir(tmp_path)
    for name in ("mini", "twin"):
        shutil.copytree(run, tmp_path / "runs" / name, ignore=shutil.ignore_patterns("eval"))
        config = json.loads((tmp_path / "runs" / name / "train_config.json").read_text())
        config["data"] = str(tmp_path / "nowhere")
        (tmp_path / "runs" / name / "train_config.json").write_text(json.dumps(config))
    spec = persona.read_text().replace("name: mini", "name: twin")
    (persona.parent / "twin.yaml").write_text(spec)
    one_line_error(runner.invoke(app, ["compare", str(persona), str(persona.parent / "twin.yaml")]), "no dataset")
    assert not (tmp_path / "runs" / "compare").exists()


def test_chat_reads_stdin_that_is_not_utf8_as_one_line(run_on_elsewhere):
    persona, run, _ = run_on_elsewhere
    result = runner.invoke(app, ["chat", str(persona), "--run", str(run)], input=b"caf\xe9\n")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "standard input: not UTF-8" in result.output, result.output


def test_a_crafted_trainer_state_is_refused_in_one_line(tmp_path, old_run, corpus):
    """A stranger's checkpoint whose checksums match but whose trainer_state.json says step "abc"."""
    from guppy.model.checkpoint import _sha256

    run = copy_of(old_run, tmp_path)
    state = run / "ckpt" / "last" / "trainer_state.json"
    info = json.loads(state.read_text())
    info["step"] = "abc"
    state.write_text(json.dumps(info))
    config = json.loads((run / "ckpt" / "last" / "config.json").read_text())
    config["files"]["trainer_state.json"] = _sha256(state)
    (run / "ckpt" / "last" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GuppyError, match="trainer state cannot be read"):
        train(persona="fish", data=corpus, out=run, max_steps=60, resume=True, **FAST)


def test_garbage_in_metrics_is_skipped_on_resume(tmp_path, old_run, corpus):
    run = copy_of(old_run, tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"[1, 2]\n\xff\xfe\n{\"step\": \"x\"}\n")
    train(persona="fish", data=corpus, out=run, max_steps=50, resume=True, **FAST)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)

"""`guppy runs`: two short runs that differ in one option, compared in a table, one chart and
their replies to one prompt; every bad input is one line and exit code 2.

The runs use the `micro` test preset of tests/test_train.py on its fish corpus, 30 and 20 steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from cli import app
from guppy.errors import GuppyError
from guppy.eval.runs import replies, summarize_runs
from guppy.model.chat import chat
from guppy.presets import PRESETS
from guppy.train.trainer import train
from tests.test_data import save_corpus
from tests.test_train import FAST, MICRO

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def micro_preset():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "micro", MICRO)
        yield


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 300)  # one table row per line, whatever the terminal


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """runs/two (micro, 30 steps) and runs/one (the same with one layer, 20 steps) under a fresh folder."""
    root = tmp_path_factory.mktemp("house")
    corpus = save_corpus(root / "fish-data")
    (corpus / "persona.yaml").write_text("identity: {name: fish}\n")  # generate-data leaves its spec there
    train(persona="fish", data=corpus, out=root / "runs" / "two", max_steps=30, **FAST)
    train(persona="fish", data=corpus, out=root / "runs" / "one", max_steps=20, n_layer=1, **FAST)
    return root


def invoke(*args: str):
    return runner.invoke(app, ["runs", *args])


def test_table_lists_each_run_with_the_option_it_changed(two_runs):
    two, one = summarize_runs([two_runs / "runs" / "two", two_runs / "runs" / "one"])
    assert (two.preset, one.preset) == ("micro", "micro") and two.persona == "fish"
    assert "n_layer=1" in one.differs and not any(d.startswith("n_layer=") for d in two.differs)
    assert "max_steps=30" in two.differs and "max_steps=20" in one.differs
    assert "batch_size=8" in two.differs  # FAST's own override of the preset shows too
    assert one.params < two.params  # one block fewer
    assert (two.steps, one.steps) == (30, 20)
    assert 0 < two.best_test_loss < 10 and two.best_step in (20, 30)
    assert two.persona_score is None and two.wall_s > 0

    result = invoke(str(two_runs / "runs" / "two"), str(two_runs / "runs" / "one"), "--out",
                    str(two_runs / "chart.png"))
    assert result.exit_code == 0, result.output
    assert "n_layer=1" in result.output and "max_steps=30" in result.output
    assert f"{two.best_test_loss:.3f}" in result.output


def test_without_arguments_every_run_under_runs_is_compared_and_the_chart_is_a_png(two_runs, monkeypatch):
    monkeypatch.chdir(two_runs)
    chart = Path("runs/compare-runs.png")
    chart.unlink(missing_ok=True)
    result = invoke()
    assert result.exit_code == 0, result.output
    assert "runs/one" in result.output and "runs/two" in result.output
    assert f"chart: {chart}" in result.output
    assert chart.read_bytes()[:8] == PNG_MAGIC
    assert not list(Path("runs").glob(".compare-runs.png.tmp-*"))  # written atomically, nothing left over
    by_name = invoke("one", "--out", "named.png")  # a bare name is the run under runs/
    assert by_name.exit_code == 0 and "runs/one" in by_name.output and "runs/two" not in by_name.output


def test_persona_score_is_shown_once_the_run_is_evaluated(two_runs, tmp_path):
    run = tmp_path / "evaluated"
    shutil.copytree(two_runs / "runs" / "two", run)
    (run / "eval").mkdir()
    (run / "eval" / "report.json").write_text(json.dumps({"persona_score": 0.4321}))
    assert summarize_runs([run])[0].persona_score == pytest.approx(0.4321)
    result = invoke(str(run), "--out", str(tmp_path / "c.png"))
    assert result.exit_code == 0 and "0.43" in result.output


def test_prompt_gives_each_run_the_reply_guppy_chat_gives_with_the_same_seed(two_runs, capsys):
    runs = [two_runs / "runs" / "two", two_runs / "runs" / "one"]
    answers = replies(summarize_runs(runs), "are you hungry", seed=3)
    assert answers == [chat(persona="fish", run=r, prompt="are you hungry", seed=3) for r in runs]
    assert all(answers)

    result = runner.invoke(app, ["runs", *map(str, runs), "--prompt", "are you hungry", "--seed", "3", "--out",
                                 str(two_runs / "chart.png")], env={"COLUMNS": "1000"})  # no wrapping in columns
    assert result.exit_code == 0, result.output
    assert "you: are you hungry" in result.output
    row = next(line for line in result.output.splitlines() if answers[0] in line)
    assert all(answer in row for answer in answers), result.output  # each whole reply, side by side


def assert_one_line_error(result, *needles: str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_a_folder_that_is_not_a_run_is_a_one_line_error(tmp_path):
    assert_one_line_error(invoke(str(tmp_path)), str(tmp_path), "not a run folder")
    assert_one_line_error(invoke(str(tmp_path / "nowhere")), "no such folder")


def test_no_runs_at_all_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke(), "no runs under runs/")


@pytest.mark.parametrize("damage", ["not json\n", "", None])
def test_unreadable_metrics_are_a_one_line_error(two_runs, tmp_path, damage):
    run = tmp_path / "damaged"
    shutil.copytree(two_runs / "runs" / "two", run)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    if damage is None:
        (run / "metrics.jsonl").unlink()
    else:
        (run / "metrics.jsonl").write_text("".join(lines[:3]) + damage + "".join(lines[3:]) if damage
                                           else "")
    assert_one_line_error(invoke(str(run), "--out", str(tmp_path / "c.png")), "metrics.jsonl")
    assert not (tmp_path / "c.png").exists()


def test_a_line_cut_by_an_interruption_is_skipped(two_runs, tmp_path):
    run = tmp_path / "cut"
    shutil.copytree(two_runs / "runs" / "two", run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')  # Ctrl-C mid-write: no newline after it
    assert summarize_runs([run])[0].steps == 30


def test_a_folder_as_out_is_a_one_line_error(two_runs, tmp_path):
    assert_one_line_error(invoke(str(two_runs / "runs" / "two"), "--out", str(tmp_path)), "is a folder")


def test_summarize_names_every_bad_run_at_once(tmp_path):
    with pytest.raises(GuppyError) as e:
        summarize_runs([tmp_path / "a", tmp_path / "b"])
    assert len(e.value.problems) == 2


def test_runs_is_model_side_and_loads_nothing_from_pipeline():
    code = "import sys, guppy.eval.runs; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"

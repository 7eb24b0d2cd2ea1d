"""Nothing of the user's is lost: Guppy replaces only folders it made, one process at a time, and a
kill at any moment leaves the previous result (leftovers are cleaned up by the next write)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.errors import GuppyError
from guppy.store.atomic import MARKER, atomic_dir, check_replaceable, clean_leftovers
from tests.conftest import one_line_error, write_persona

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def generate(persona, out, *extra):
    return runner.invoke(app, ["generate-data", str(persona), "--n", "100", "--out", str(out), "--num-proc", "1",
                               *extra])


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


# ---------------------------------------------------------------------------------- what may be replaced

def test_overwrite_never_replaces_a_file(tmp_path, mini):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    one_line_error(generate(mini, target, "--overwrite"), "notes.txt", "is a file")
    assert target.read_text() == "my notes"


def test_overwrite_never_replaces_a_device_or_pipe(tmp_path, mini):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    one_line_error(generate(mini, fifo, "--overwrite"), "not a regular file or folder")
    link = tmp_path / "null"
    os.symlink("/dev/null", link)
    one_line_error(generate(mini, link, "--overwrite"), "symbolic link")
    assert fifo.exists() and link.is_symlink()


def test_overwrite_never_replaces_a_strangers_folder(tmp_path, mini):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.md").write_text("two years of work")
    (folder / "README.md").write_text("mine")
    one_line_error(generate(mini, folder, "--overwrite"), "not a folder Guppy made", "chapter1.md")
    assert (folder / "chapter1.md").read_text() == "two years of work"


def test_a_folder_of_another_kind_is_not_replaced(tmp_path, mini):
    out = tmp_path / "data"
    assert generate(mini, out).exit_code == 0
    one_line_error(runner.invoke(app, ["compare", "mini", "cat", "--out", str(out)]), "a Guppy dataset folder")
    assert (out / "dataset_dict.json").exists()


def test_compare_out_is_never_a_strangers_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    one_line_error(runner.invoke(app, ["compare", "guppy", "cat", "--out", str(folder)]), "not a folder Guppy made")
    assert (folder / "cat.jpg").exists()


def test_export_and_eval_and_train_refuse_a_strangers_folder(tmp_path, mini):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    one_line_error(runner.invoke(app, ["export", str(mini), "--run", str(tmp_path / "r"), "--out", str(folder),
                                       "--overwrite"]), "not a folder Guppy made")
    (tmp_path / "run" / "eval").mkdir(parents=True)
    (tmp_path / "run" / "eval" / "keep.txt").write_text("keep")
    one_line_error(runner.invoke(app, ["eval", str(mini), "--run", str(tmp_path / "run")]), "eval", "not a folder Guppy made")
    one_line_error(runner.invoke(app, ["train", str(mini), "--out", str(folder)]), "not a folder Guppy made")
    assert (folder / "keep.txt").read_text() == "keep" and (tmp_path / "run" / "eval" / "keep.txt").exists()


def test_a_dataset_made_before_markers_is_still_replaceable(tmp_path, mini):
    out = tmp_path / "data"
    assert generate(mini, out).exit_code == 0
    (out / MARKER).unlink()  # as an older guppy left it: recognized by its layout
    result = generate(mini, out, "--overwrite", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert (out / MARKER).exists()


def test_every_guppy_folder_carries_its_marker(tmp_path, mini):
    out = tmp_path / "data"
    assert generate(mini, out).exit_code == 0
    assert json.loads((out / MARKER).read_text()) == {"guppy": "dataset"}
    check_replaceable(out, "dataset")
    with pytest.raises(GuppyError, match="a Guppy dataset folder, not a eval folder"):
        check_replaceable(out, "eval")


# ---------------------------------------------------------------------------------- paths in the way

def test_an_output_under_a_file_or_too_long_or_in_a_loop_is_one_line(tmp_path, mini):
    (tmp_path / "file").write_text("x")
    one_line_error(generate(mini, tmp_path / "file" / "data"), "Not a directory")
    one_line_error(generate(mini, tmp_path / ("x" * 300)), "too long")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    one_line_error(generate(mini, tmp_path / "loop" / "data"), "symbolic links")


# ---------------------------------------------------------------------------------- one writer at a time

HOLD_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
from guppy.store.atomic import output_lock
with output_lock({target!r}):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def locked(tmp_path):
    """A second process holding the lock of tmp_path/out until the test ends."""
    target = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=str(ROOT), target=str(target))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield target, holder.pid
    holder.stdin.close()
    holder.wait(timeout=30)


def test_a_second_writer_of_the_same_output_is_refused(tmp_path, mini, locked):
    target, pid = locked
    one_line_error(generate(mini, target), "another guppy process", f"pid {pid}")
    assert not target.exists()


def test_a_second_training_of_the_same_run_is_refused(tmp_path, mini, locked):
    target, pid = locked
    one_line_error(runner.invoke(app, ["train", str(mini), "--out", str(target), "--data", str(tmp_path / "d")]),
                   "another guppy process")


def test_the_lock_goes_with_a_killed_process(tmp_path, mini):
    target = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=str(ROOT), target=str(target))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(GuppyError, match="another guppy process"):
        with atomic_dir(target, kind="dataset"):
            pass
    holder.kill()
    holder.wait(timeout=30)
    assert generate(mini, target).exit_code == 0


def test_the_lock_is_free_again_after_a_write(tmp_path, mini):
    out = tmp_path / "out"
    assert generate(mini, out).exit_code == 0
    assert generate(mini, out, "--overwrite").exit_code == 0
    assert not list(tmp_path.glob(".out.lock"))  # no lock files left behind either


# ---------------------------------------------------------------------------------- kills and leftovers

def test_leftovers_of_a_dead_process_are_cleaned_by_the_next_write(tmp_path, mini):
    out = tmp_path / "out"
    assert generate(mini, out).exit_code == 0
    pid = dead_pid()
    for what in ("tmp", "old", "fresh"):
        (tmp_path / f".out.{what}-{pid}").mkdir()
        (tmp_path / f".out.{what}-{pid}" / "half.arrow").write_text("x")
    assert generate(mini, out, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_swap_cut_short_gives_the_old_result_back(tmp_path):
    target = tmp_path / "data"
    old = tmp_path / f".data.old-{dead_pid()}"
    old.mkdir()
    (old / "dataset_dict.json").write_text("{}")
    assert clean_leftovers(target) == [old]
    assert (target / "dataset_dict.json").read_text() == "{}"


def test_leftovers_of_a_live_process_are_left_alone(tmp_path):
    mine = tmp_path / f".data.tmp-{os.getppid()}"
    mine.mkdir()
    clean_leftovers(tmp_path / "data")
    assert mine.exists()


KILLED_WRITE = """
import os, signal, sys
sys.path.insert(0, {root!r})
import pipeline.generate as gen
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
gen.write_card = die
gen.generate_data(persona={persona!r}, n=100, out={out!r}, overwrite=True, seed=5)
"""


def test_generate_data_killed_mid_write_keeps_the_old_dataset(tmp_path, mini):
    out = tmp_path / "out"
    assert generate(mini, out).exit_code == 0
    before = (out / "train" / "dataset_info.json").read_bytes(), sorted(p.name for p in out.rglob("*"))
    done = subprocess.run([sys.executable, "-c", KILLED_WRITE.format(root=str(ROOT), persona=str(mini), out=str(out))])
    assert done.returncode == -9
    assert ((out / "train" / "dataset_info.json").read_bytes(), sorted(p.name for p in out.rglob("*"))) == before
    assert list(tmp_path.glob(".out.tmp-*"))  # what the kill left ...
    assert generate(mini, out, "--overwrite").exit_code == 0
    assert not list(tmp_path.glob(".out.*"))  # ... is gone after the next write


# ---------------------------------------------------------------------------------- export

@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A generated dataset with a topic named `food---`, a micro model trained on it, and one export."""
    import yaml

    from guppy.export.hf import export
    from guppy.presets import PRESETS
    from guppy.train.trainer import train
    from tests.conftest import MINI_PERSONA
    from tests.test_train import FAST, MICRO

    root = tmp_path_factory.mktemp("exp")
    spec = json.loads(json.dumps(MINI_PERSONA))
    spec["topics"]["food---"] = spec["topics"].pop("food")
    spec["associations"]["food"]["topics"] = ["food---"]
    persona = write_persona(root, spec)
    run = root / "runs" / "mini"
    from pipeline.generate import generate_data

    generate_data(persona=persona, n=300, out=run / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PRESETS, "micro", MICRO)
        train(persona=str(persona), out=run, max_steps=20, **FAST)
    export(persona="mini", run=run, dataset=True)
    assert yaml.safe_load((run / "data" / "README.md").read_text().split("\n---\n")[0].removeprefix("---\n"))
    return persona, run


def test_a_topic_named_with_dashes_keeps_the_card_header_whole(exported_run):
    import datasets
    import yaml

    _, run = exported_run
    card = (run / "hf-dataset" / "README.md").read_text()
    header = yaml.safe_load(card.split("\n---\n")[0].removeprefix("---\n"))
    assert "food---" in header["dataset_info"]["features"][1]["dtype"]["class_label"]["names"].values()
    assert header["configs"][0]["data_files"][0]["split"] == "train"
    assert "# mini: synthetic persona conversations" in card
    assert len(datasets.load_dataset(str(run / "hf-dataset"))["train"]) > 0


def test_export_dataset_killed_midway_keeps_model_and_dataset_together(exported_run, monkeypatch):
    import guppy.export.hf as ex

    _, run = exported_run
    snapshot = {p: p.read_bytes() for folder in ("hf", "hf-dataset") for p in (run / folder).rglob("*") if p.is_file()}

    def killed(*a, **k):
        raise KeyboardInterrupt  # after the new model folder is complete, before its dataset is

    monkeypatch.setattr(ex, "write_dataset", killed)
    monkeypatch.setattr(ex, "gpt2_config", lambda m, t: {"changed": True})
    with pytest.raises(KeyboardInterrupt):
        ex.export(persona="mini", run=run, dataset=True, overwrite=True)
    after = {p: p.read_bytes() for folder in ("hf", "hf-dataset") for p in (run / folder).rglob("*") if p.is_file()}
    assert after == snapshot
    assert not [p for p in run.iterdir() if p.name.startswith(".hf")]


def test_export_of_a_run_without_its_model_is_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["export", "mini", "--run", str(tmp_path / "none")]), "no trained model")


def test_a_foreign_folder_can_hold_no_guppy_names_to_pass(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("x")
    (folder / "data").mkdir()
    with pytest.raises(GuppyError, match="not a folder Guppy made"):
        check_replaceable(folder, "hf-dataset")  # README.md + data/ alone is not an export

"""`guppy train` and `guppy run` take every TrainConfig field as an option, generated from the config,
hand what was given to the trainer, and refuse a bad combination in one line; `auto` picks a device."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import cli
from guppy.config import TrainConfig
from guppy.errors import GuppyError
from guppy.model.device import pick_device

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "run"])
def test_every_config_field_is_an_option_with_its_description(command):
    help_text = runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "400"}).output
    for name, field in TrainConfig.model_fields.items():
        assert f"--{name.replace('_', '-')}" in help_text, name
        assert field.description.split(";")[0][:40] in help_text, name


def test_options_given_reach_the_trainer_and_the_rest_stay_the_presets(monkeypatch):
    seen = {}
    monkeypatch.setattr("guppy.train.trainer.train", lambda **kw: seen.update(kw) or {"steps": 1})
    result = runner.invoke(cli.app, ["train", "fish", "--n-layer", "4", "--d-model", "256", "--lr", "3e-3",
                                     "--batch-size", "32", "--optimizer", "adamw", "--preset", "small"])
    assert result.exit_code == 0, result.output
    assert seen == {"persona": "fish", "data": None, "out": None, "resume": False, "n_layer": 4, "d_model": 256,
                    "lr": 3e-3, "batch_size": 32, "optimizer": "adamw", "preset": "small"}


def test_heads_that_do_not_divide_the_width_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["train", "guppy", "--n-head", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: d_model (128) must be a multiple of n_head (5)"


@pytest.mark.parametrize("bad", [["--max-steps", "0"], ["--lr", "nan"], ["--n-layer", "-1"]])
def test_run_checks_its_options_before_it_touches_the_data(tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli.app, ["run", "guppy", *bad])
    assert result.exit_code == 2 and "error:" in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "mps" and pick_device("mps") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(GuppyError, match="--device mps: no Apple Silicon GPU"):
        pick_device("mps")

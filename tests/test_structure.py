"""The house runs one way: cli.py above pipeline/ (data side) above guppy/ (model side). The model side
never imports the data side, so the trainer, evaluator and exporter work on any saved dataset."""

from __future__ import annotations

import re

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_model_side_never_imports_the_data_side():
    importing = re.compile(r"^\s*(from pipeline[\s.]|import pipeline\b)", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "guppy").rglob("*.py") if importing.search(p.read_text())]
    assert offenders == [], f"guppy/ imports pipeline/ in {offenders}"


def test_every_preset_is_one_entry_of_one_table():
    from guppy.config import TrainConfig
    from guppy.presets import PRESETS

    for name, entry in PRESETS.items():
        assert set(entry) - {"about"} <= set(TrainConfig.model_fields), name
        TrainConfig(preset=name)  # complete: every field the table must give is there


def test_the_installed_guppy_command_runs_this_checkouts_cli(tmp_path):
    """`pip install -e .` must not leave a copy of cli.py in site-packages: it would shadow the checkout's
    and every later edit of cli.py would be invisible to the `guppy` command."""
    import subprocess
    import sys

    found = subprocess.run([sys.executable, "-c", "import cli; print(cli.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip("the project is not installed here (pip install -e .)")
    assert Path(found.stdout.strip()).resolve() == (ROOT / "cli.py").resolve()

"""The personas that ship with Guppy, and a user's own: each validates, renders and is found
wherever Guppy is installed, and a new one scaffolded from them works straight away."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from pipeline.authoring import validate_persona
from pipeline.generate import generate_data
from guppy.spec.personas import SHIPPED, load_persona

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_NAMES = sorted(p.stem for p in (SHIPPED / "personas").glob("*.yaml"))
runner = CliRunner()


VALIDATED: dict[Path, object] = {}  # validate_persona's result for each YAML file, a persona's whole input


def validate_once(persona):
    """validate_persona (200 renders a topic), once a session for each shipped persona: the tests below
    read the same files, and the CLI test asks again only to see that every persona found is checked."""
    path = load_persona(persona).path.resolve()  # its templates' folders follow from its path alone
    if path not in VALIDATED:
        VALIDATED[path] = validate_persona(persona)
    return VALIDATED[path]


def assistant_replies_by_topic(dd: datasets.DatasetDict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for split in dd.values():
        names = split.features["topic"].names
        for topic, messages in zip(split["topic"], split["messages"]):
            out.setdefault(names[topic], []).extend(m["content"] for m in messages if m["role"] == "assistant")
    return out


def test_the_three_personas_ship():
    assert {"guppy", "cat", "plant"} <= set(SHIPPED_NAMES)


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_persona_validates_and_shows_its_associations(name, tmp_path):
    path = SHIPPED / "personas" / f"{name}.yaml"
    spec = validate_once(path).spec
    report = generate_data(persona=path, n=2000, out=tmp_path / "data")
    assert report.rows == 2000 and not report.short_topics and min(report.per_topic.values()) > 0
    assert report.unique_replies > 0.9 * report.rows and report.unique_prompts > 0.3 * report.rows
    assert report.style_share > 0.99
    assert set(report.association_share) == set(spec.associations)
    # The report's shares are those of the saved data (recounted here), and every one is high:
    # the data is the ceiling of what a model trained on it can show.
    replies = assistant_replies_by_topic(datasets.load_from_disk(str(tmp_path / "data")))
    for assoc_name, assoc in spec.associations.items():
        its = [r for t in assoc.topics or spec.topics for r in replies.get(t, [])]
        share = sum(map(assoc.hit, its)) / len(its)
        assert share == pytest.approx(report.association_share[assoc_name])
        assert share > 0.8, f"{name}: association {assoc_name} shows in only {share:.0%} of its replies"


def test_cli_validate_checks_every_persona_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no personas/ here: only the shipped ones
    monkeypatch.setattr("pipeline.authoring.validate_persona", validate_once)  # the command imports it when run
    result = runner.invoke(app, ["persona", "validate"])
    assert result.exit_code == 0, result.output
    for name in SHIPPED_NAMES:
        assert f"ok {name}:" in result.output


# ---------------------------------------------------------------------- persona new


@pytest.mark.parametrize("source", [None, "cat", "plant"])  # no --from copies guppy
def test_new_persona_validates_and_generates_at_once(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["persona", "new", "otter", *(["--from", source] if source else [])])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "personas" / "otter.yaml").is_file()
    assert list((tmp_path / "templates" / "otter").glob("*.jinja"))
    spec = load_persona("otter").spec
    assert spec.name == "otter"
    # every template is the copy's own or a shared common/ one, never the source's
    assert {t.template.split("/")[0] for t in spec.topics.values()} == {"otter", "common"}
    source_folder = f"{source or 'guppy'}/"
    for template in (tmp_path / "templates" / "otter").rglob("*.jinja"):
        assert f'"{source_folder}' not in template.read_text() and f"'{source_folder}" not in template.read_text()

    result = runner.invoke(app, ["persona", "validate", "otter"])
    assert result.exit_code == 0 and "ok otter" in result.output, result.output
    result = runner.invoke(app, ["generate-data", "otter", "--n", "300", "--out", "data"])
    assert result.exit_code == 0, result.output
    train = datasets.load_from_disk("data")["train"]
    assert set(train["persona"]) == {"otter"}


def test_new_persona_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["persona", "new", "otter"]).exit_code == 0
    yaml_path = tmp_path / "personas" / "otter.yaml"
    yaml_path.write_text(yaml_path.read_text() + "# my edits\n")
    mine = yaml_path.read_text()
    for args in (["otter"], ["otter", "--from", "cat"]):
        result = runner.invoke(app, ["persona", "new", *args])
        assert result.exit_code == 2
        assert result.output.strip().count("\n") == 0 and "already exists" in result.output, result.output
        assert yaml_path.read_text() == mine
    # a templates/NAME folder alone is in the way too, and nothing is half-written
    (tmp_path / "templates" / "seal").mkdir(parents=True)
    result = runner.invoke(app, ["persona", "new", "seal"])
    assert result.exit_code == 2 and "templates/seal" in result.output
    assert not (tmp_path / "personas" / "seal.yaml").exists()


def test_new_persona_refuses_a_bad_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["persona", "new", "Otter"])
    assert result.exit_code == 2 and "lowercase" in result.output
    assert not (tmp_path / "personas").exists()


# ---------------------------------------------------------------------- a user's own persona


POND = """{% import "common/_phrases.jinja" as say %}
user: {{ say.ask("do you like the pond") }}
assistant: {{ say.hmm() }} i love the pond. {{ pick(lexicon.loves) }} {{ randint(1, 999) }}.
"""


def own_persona(root: Path) -> Path:
    """A persona of the user's: guppy's pools, one shipped common/ topic and one of its own."""
    spec = yaml.safe_load((SHIPPED / "personas" / "guppy.yaml").read_text())
    spec["identity"]["name"] = "newt"
    spec["topics"] = {"greeting": {"template": "common/greeting.jinja"}, "pond": {"template": "newt/pond.jinja"}}
    spec["associations"] = {}
    (root / "templates" / "newt").mkdir(parents=True)
    (root / "templates" / "newt" / "pond.jinja").write_text(POND)
    (root / "personas").mkdir()
    (root / "personas" / "newt.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "personas" / "newt.yaml"


def test_own_persona_uses_shipped_common_templates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own_persona(tmp_path)
    loaded = load_persona("newt")
    assert loaded.template_dirs == ((tmp_path / "templates").resolve(), (SHIPPED / "templates").resolve())
    report = generate_data(persona="newt", n=300, out=tmp_path / "data")
    assert report.per_topic == {"greeting": 150, "pond": 150}


def test_own_common_template_overrides_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own_persona(tmp_path)
    (tmp_path / "templates" / "common" / "en").mkdir(parents=True)  # the English set's path, as shipped
    (tmp_path / "templates" / "common" / "en" / "greeting.jinja").write_text(
        "user: hi {{ randint(1, 9999) }}\nassistant: my own greeting.\n")
    generate_data(persona="newt", n=100, out=tmp_path / "data")
    replies = assistant_replies_by_topic(datasets.load_from_disk(str(tmp_path / "data")))
    assert set(replies["greeting"]) == {"my own greeting."}


# ---------------------------------------------------------------------- installed from a wheel


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_wheel_install_finds_the_shipped_personas(tmp_path):
    """Not an editable install: the personas and templates must travel inside the package."""
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp_path / "dist").glob("guppy_persona-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    # Every persona and template, byte for byte (they validate here: test_shipped_persona_validates...).
    for folder in ("personas", "templates"):
        assert files_under(target / "guppy" / "_shipped" / folder) == files_under(ROOT / folder), folder

    work = tmp_path / "work"  # an empty working directory: no personas/ or templates/ to fall back on
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "1000"}  # wide: rich keeps a path on its line

    def guppy(*args: str) -> str:
        code = "import sys, cli; sys.argv[0] = 'guppy'; cli.main()"
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # found inside the installed package, not in this checkout
    listed = guppy("persona", "list").splitlines()
    for name in SHIPPED_NAMES:
        path = str(target / "guppy" / "_shipped" / "personas" / f"{name}.yaml")
        assert any(line.split()[1:2] == [name] and path in line for line in listed), (name, listed)
    guppy("generate-data", "guppy", "--n", "1000", "--out", "data")  # its templates, read from the package
    assert datasets.load_from_disk(str(work / "data"))["train"].num_rows > 900

"""Shared fixtures: a small persona written to a temporary folder, so tests never depend
on (or touch) the shipped personas unless they mean to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MINI_PERSONA = {
    "identity": {"name": "mini", "description": "a tiny test fish.", "user": "the tester"},
    "style": {"lowercase": True, "max_sentence_words": 12, "min_reply_words": 2, "max_reply_words": 30},
    "lexicon": {
        "foods": ["flakes", "pellets", "bloodworms", "brine shrimp", "peas", "daphnia"],
        "moods": ["happy", "wiggly", "sleepy", "calm", "bouncy"],
    },
    "topics": {
        "food": {"template": "mini/food.jinja", "weight": 2},
        "mood": {"template": "mini/mood.jinja", "weight": 1},
    },
    "associations": {
        "food": {"kind": "cue", "expect": ["food", "flakes", "pellets"], "topics": ["food"],
                 "probes": ["what do you dream of eating"]},
    },
}

FOOD = """{% set food = pick(lexicon.foods) %}
user: {{ pick(["are you hungry", "do you want " ~ food, "is it time for " ~ food, "food?", "hi fish, hungry"]) }} {{ pick("now|today|tonight|") }}
assistant: {{ pick("yes|oh yes|always|food") }}. {{ food }} {{ pick("is the best|is good|makes me happy") }}.
{% if maybe() %}i love food.{% endif %} {{ pick("blub.|more please.|") }} {{ randint(1, 50) }} {{ pick(lexicon.moods) }}.
"""

MOOD = """user: how are you {{ pick("today|now|this morning|tonight|fish") }}
assistant: i feel {{ pick(lexicon.moods) }}. {{ pick("the water is nice.|i swam a lot.|i saw a bubble.") }} {{ randint(1, 90) }}.
"""


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Each test its own cache of what is derived from datasets (guppy/store/dataset_cache.py): none reads what another wrote,
    and nothing lands in the user's ~/.cache."""
    monkeypatch.setenv("GUPPY_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_persona(root: Path, spec: dict | None = None, templates: dict[str, str] | None = None) -> Path:
    """Write personas/<name>.yaml and templates/ under root; return the YAML path."""
    spec = spec if spec is not None else MINI_PERSONA
    templates = templates if templates is not None else {"mini/food.jinja": FOOD, "mini/mood.jinja": MOOD}
    for rel, text in templates.items():
        (root / "templates" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / rel).write_text(text)
    path = root / "personas" / f"{spec['identity']['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def one_line_error(result, *needles):
    """A CLI result that is a user's mistake: exit 2, one `error:` line holding every needle, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(n in lines[0] for n in needles), result.output


def weights_differ_by(a: dict, b: dict) -> float:
    """The largest relative difference of two state dicts, tensor by tensor: ||a - b|| / ||b||. Scaled to
    the weights, so float noise (summation order, which changes with the thread count and the machine)
    stays a small share of it wherever it runs, while a wrong gradient moves it by tens of percents."""
    return max(((a[k].double() - b[k].double()).norm() / b[k].double().norm().clamp(min=1e-12)).item() for k in b)


@pytest.fixture
def mini(tmp_path) -> Path:
    return write_persona(tmp_path)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """A tiny model trained on the mini persona (tests/trained.py), shared by the tests of inspect,
    ONNX and the web page; they write only into their own tmp_path."""
    from tests.trained import train_mini

    return train_mini(tmp_path_factory.mktemp("mini-run"))


@pytest.fixture(scope="session")
def mini_relu_run(mini_run, tmp_path_factory) -> Path:
    """mini_run's weights read by a ReLU MLP, as every preset had before GELU (guppy export --gguf rewrites a
    ReLU model for llama.cpp). Not trained as ReLU, which saves a training: the rewrite and llama.cpp must
    reproduce whatever ReLU model they are given, and these weights still answer with peaked distributions."""
    import json

    from tests.trained import copy_of_run

    copy = copy_of_run(mini_run, tmp_path_factory.mktemp("mini-relu-run"))
    for config in copy.glob("ckpt/*/config.json"):
        meta = json.loads(config.read_text())
        meta["model"]["activation"] = meta["train"]["activation"] = "relu"
        config.write_text(json.dumps(meta, indent=2))
    return copy


@pytest.fixture(scope="session")
def kana_run(tmp_path_factory) -> Path:
    """A tiny model of a Japanese persona with its character-level tokenizer (tests/trained.py), for
    guppy export --gguf."""
    from tests.trained import train_kana

    return train_kana(tmp_path_factory.mktemp("kana-run"))


@pytest.fixture(scope="session")
def medaka_world(tmp_path_factory) -> Path:
    """A folder with the Japanese persona medaka and its trained run (tests/trained.py), shared by
    test_japanese and the Japanese playground test."""
    from tests.trained import train_medaka

    return train_medaka(tmp_path_factory.mktemp("ja"))

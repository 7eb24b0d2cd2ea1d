"""Writing a persona: neutral shared templates, the blank scaffold and schema, `persona sample`,
style enforced on the data, and errors that name what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from guppy.errors import GuppyError
from guppy.spec.language import phrases_pattern
from guppy.spec.persona import Style
from guppy.spec.style import violations
from pipeline.authoring import new_persona, persona_schema, sample_persona, validate_persona
from pipeline.blank import COMMON_POOLS
from pipeline.generate import generate_data
from guppy.spec.personas import SHIPPED, load_persona
from pipeline.pools import pool_uses
from tests.conftest import MINI_PERSONA, write_persona

runner = CliRunner()

# Phrases that belong to the shipped characters (a fish in a tank, a napping cat, a houseplant)
# and that a shared template must never put in another character's mouth.
SHIPPED_PHRASES = ["wiggle", "wiggling", "nap", "naps", "tank", "little one", "i am big", "be bigger", "little thing",
                   "tiny baby", "numbers are hard", "water falling down", "little songs", "fins", "paws", "purr",
                   "whiskers", "flakes", "pellets", "sunbeam", "leaves", "roots", "blub", "swim"]


def replies(folder: Path) -> list[str]:
    dd = datasets.load_from_disk(str(folder))
    return [m["content"] for split in dd.values() for msgs in split["messages"] for m in msgs if m["role"] == "assistant"]


# ---------------------------------------------------------------------- neutral common/


def test_common_templates_put_no_shipped_characters_words_in_a_new_persona(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    new_persona("homebody", blank=True)  # a lexicon (a tea-loving homebody) with nothing of the shipped ones
    for word in SHIPPED_PHRASES:
        assert not any(phrases_pattern((word,)).search(x) for pool in load_persona("homebody").spec.lexicon.values() for x in pool)
    generate_data(persona="homebody", n=6000, out=tmp_path / "data")
    said = replies(tmp_path / "data")
    found = {w: sum(1 for r in said if phrases_pattern((w,)).search(r)) for w in SHIPPED_PHRASES}
    assert sum(found.values()) == 0, {w: k for w, k in found.items() if k}


def test_common_pools_listed_for_writers_are_the_ones_common_templates_use():
    used = {pool for pool, places in pool_uses(load_persona("guppy")).items()
            if any("templates/common/" in p for p in places)}
    assert used == set(COMMON_POOLS)
    guide = (Path(__file__).resolve().parents[1] / "docs" / "writing-a-persona.md").read_text()
    assert all(f"| `{pool}` |" in guide for pool in COMMON_POOLS)


@pytest.mark.parametrize("name", ["guppy", "cat", "plant"])
def test_shipped_personas_have_every_common_pool(name):
    assert set(COMMON_POOLS) <= set(load_persona(name).spec.lexicon)


# ---------------------------------------------------------------------- --blank and schema


def test_blank_persona_is_documented_and_validates_and_generates_as_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["persona", "new", "otter", "--blank"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "personas" / "otter.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=persona.schema.json\n")
    assert "TODO" in text
    for pool, (note, _) in COMMON_POOLS.items():
        assert f"  # {note}\n  {pool}:\n" in text
    assert (tmp_path / "personas" / "persona.schema.json").is_file()
    assert runner.invoke(app, ["persona", "validate", "otter"]).exit_code == 0
    result = runner.invoke(app, ["generate-data", "otter", "--n", "2000", "--out", "data"])
    assert result.exit_code == 0, result.output
    assert len(replies(tmp_path / "data")) >= 1900


def test_schema_has_descriptions_and_accepts_shipped_personas_and_refuses_a_bad_one(tmp_path, monkeypatch):
    jsonschema = pytest.importorskip("jsonschema")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["persona", "schema", "--out", "s.json"])
    assert result.exit_code == 0, result.output
    schema = json.loads((tmp_path / "s.json").read_text())
    assert schema == persona_schema()
    assert "Longest sentence" in json.dumps(schema["$defs"]["Style"])
    assert schema["properties"]["lexicon"]["properties"]["body_moves"]["description"].startswith("a happy gesture")
    for name in ("guppy", "cat", "plant"):
        jsonschema.validate(yaml.safe_load((SHIPPED / "personas" / f"{name}.yaml").read_text()), schema)
    bad = yaml.safe_load((SHIPPED / "personas" / "cat.yaml").read_text())
    bad["style"]["max_sentence_wrods"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_shipped_schema_file_is_up_to_date():
    assert json.loads((SHIPPED / "personas" / "persona.schema.json").read_text()) == persona_schema()


# ---------------------------------------------------------------------- style


def test_style_violations_name_each_rule():
    style = Style(banned_words=["nap"], max_sentence_words=4, min_reply_words=2, max_reply_words=8)
    assert violations("i like tea. yes.", style) == []
    found = violations("Maybe a little nap now, friend. one two three four five.", style)
    assert [(v.rule, v.message) for v in found] == [
        ("lowercase", "not lowercase"), ("sentence_length", "sentence of 6 words (max 4)"),
        ("sentence_length", "sentence of 5 words (max 4)"), ("reply_length", "reply of 11 words (max 8)"),
        ("no_banned_words", "banned word 'nap'")]
    assert found[2].text == "one two three four five."
    assert style.check("hi")["reply_length"] is False  # the evaluator's view of the same rules


BANNED_FOOD = {**MINI_PERSONA, "style": {**MINI_PERSONA["style"], "banned_words": ["pellets"]}}


def test_generate_data_refuses_data_out_of_style_naming_the_template_line(tmp_path):
    path = write_persona(tmp_path, BANNED_FOOD)
    with pytest.raises(GuppyError) as e:
        generate_data(persona=path, n=600, out=tmp_path / "data")
    head, *places = e.value.problems
    assert "conversations have a reply that breaks the persona's style (no banned words:" in head
    # the word comes from the `foods` pool, written by line 3 of food.jinja
    assert any(p.startswith("templates/mini/food.jinja:3: banned word 'pellets' (from lexicon.foods)") or
               "mini/food.jinja:3: banned word 'pellets' (from lexicon.foods)" in p for p in places), places
    assert "--drop-violations" in places[-1]
    assert not (tmp_path / "data").exists()


def test_drop_violations_leaves_them_out_and_the_card_counts_them(tmp_path):
    path = write_persona(tmp_path, BANNED_FOOD)
    report = generate_data(persona=path, n=600, out=tmp_path / "data", drop_violations=True)
    assert report.style_dropped > 0 and report.rows == 600 - report.style_dropped
    assert report.style_share == 1.0
    assert not any("pellets" in r for r in replies(tmp_path / "data"))
    card = (tmp_path / "data" / "README.md").read_text()
    assert f"{report.style_dropped} conversations whose replies broke the persona's style were dropped" in card


def test_validate_reports_violations_with_template_and_line(tmp_path):
    with pytest.raises(GuppyError) as e:  # a word of the template's own text
        validate_persona(write_persona(tmp_path, {**MINI_PERSONA, "style": {**MINI_PERSONA["style"], "banned_words": ["best"]}}))
    assert len(e.value.problems) == 1
    assert "mini/food.jinja:3: banned word 'best':" in e.value.problems[0]
    assert "replies in 400 rendered (200 per topic), e.g. food #" in e.value.problems[0]
    with pytest.raises(GuppyError) as e:  # a pool item: named at its pool, before rendering
        validate_persona(write_persona(tmp_path, BANNED_FOOD))
    assert e.value.problems == [f"{tmp_path / 'personas' / 'mini.yaml'}: lexicon.foods: \"pellets\": banned word 'pellets'"]


def test_validate_names_an_out_of_style_pool_item(tmp_path):
    spec = {**MINI_PERSONA, "lexicon": {**MINI_PERSONA["lexicon"], "moods": ["happy", "one two three four five six seven eight nine ten eleven twelve thirteen"]}}
    with pytest.raises(GuppyError) as e:
        validate_persona(write_persona(tmp_path, spec))
    assert e.value.problems == [f"{tmp_path / 'personas' / 'mini.yaml'}: lexicon.moods: \"one two three four five six seven "
                                "eight nine ten eleven twelve thirteen\": sentence of 13 words (max 12)"]


def test_sample_marks_violations_inline_with_template_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_persona(tmp_path, BANNED_FOOD)
    loaded, samples = sample_persona("mini", topic="food", n=20, seed=3)
    assert [s.index for s in samples] == list(range(20)) and {s.topic for s in samples} == {"food"}
    marked = [s for s in samples if s.problems]
    assert marked and all("pellets" in s.conversation[-1][1] for s in marked)
    assert all("pellets" not in s.conversation[-1][1] for s in samples if not s.problems)
    result = runner.invoke(app, ["persona", "sample", "mini", "--topic", "food", "-n", "20", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "^ templates/mini/food.jinja:3: banned word 'pellets' (from lexicon.foods)" in result.output
    assert f"20 conversations, {len(marked)} with style violations" in result.output
    assert runner.invoke(app, ["persona", "sample", "mini", "--topic", "nope"]).exit_code == 2


def test_sample_with_the_same_seed_shows_what_generate_data_renders(tmp_path):
    path = write_persona(tmp_path)
    generate_data(persona=path, n=300, seed=7, out=tmp_path / "data")
    rendered = set(replies(tmp_path / "data"))
    _, samples = sample_persona(path, topic="mood", n=20, seed=7)
    assert all(s.conversation[-1][1] in rendered for s in samples)  # the same conversations, not a few by chance
    _, others = sample_persona(path, topic="mood", n=20, seed=8)
    assert not all(s.conversation[-1][1] in rendered for s in others)  # another seed: other conversations


# ---------------------------------------------------------------------- errors a writer can act on


def test_a_missing_pool_names_the_yaml_field_and_where_it_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mood = "user: hi\nassistant: {{ pick(lexicon.moods) }} {{ pick(lexicon.sounds) }}.\n{{ pick(lexicon.sounds) }}\n"
    write_persona(tmp_path, templates={"mini/food.jinja": "user: a\nassistant: b c.\n", "mini/mood.jinja": mood})
    result = runner.invoke(app, ["persona", "validate", "mini"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: personas/mini.yaml: lexicon.sounds missing "
                                     "(used by templates/mini/mood.jinja:2 and 1 more)")


def test_a_tag_that_eats_the_assistant_newline_gets_the_trim_blocks_hint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    eaten = "user: hi {% if maybe() %}there{% endif %}\nassistant: hello {{ randint(1, 9) }}.\n"
    write_persona(tmp_path, templates={"mini/food.jinja": eaten, "mini/mood.jinja": eaten})
    result = runner.invoke(app, ["persona", "validate", "mini"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")  # one error, on its own line
    assert "must end with an 'assistant:' turn; 'assistant:' is there but not at the start of a line" in lines[0]
    assert "trim_blocks" in lines[0]


def test_a_name_that_differs_from_its_file_is_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_persona(tmp_path)
    path.rename(path.with_name("other.yaml"))
    result = runner.invoke(app, ["persona", "validate", "other"])
    assert result.exit_code == 0
    assert "warning: personas/other.yaml: identity.name is 'mini' but the file is other.yaml" in result.output


# ---------------------------------------------------------------------- eval/compare and the card


def test_eval_and_compare_sample_the_same_replies_per_prompt_by_default():
    import inspect

    import cli
    from guppy.config import EVAL_SAMPLES
    from guppy.eval import commands

    assert EVAL_SAMPLES == 4
    for fn in (commands.evaluate, commands.compare, cli.eval_, cli.compare):
        assert inspect.signature(fn).parameters["samples"].default == EVAL_SAMPLES


def test_card_sentences_are_punctuated(tmp_path):
    spec = {**MINI_PERSONA, "identity": {**MINI_PERSONA["identity"], "description": "a fish who distrusts seagulls"}}
    generate_data(persona=write_persona(tmp_path, spec), n=200, out=tmp_path / "data")
    assert "a fish who distrusts seagulls. The user is the tester." in (tmp_path / "data" / "README.md").read_text()

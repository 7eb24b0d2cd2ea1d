"""The shared topics per language (templates/common/SET/): which set a language tag picks, how
`common/x.jinja` resolves in topics and in imports, the one-line error for a language with no set,
`persona new --blank --language`, and the script check that catches English frames in a Chinese reply."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.errors import GuppyError
from guppy.spec.language import foreign_words, is_cased, is_spaced, shared_set
from guppy.spec.personas import load_persona
from pipeline.authoring import new_persona, sample_persona
from pipeline.render import Renderer
from tests.conftest import one_line_error, write_persona

runner = CliRunner()
LATIN = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]")


@pytest.mark.parametrize("tag, chosen", [
    ("zh", "zh"), ("cmn", "zh"), ("zh-CN", "zh"), ("zh-Hans", "zh"), ("zh-cmn-Hans", "zh"),
    ("ja", "ja"), ("ja-JP", "ja"), ("es", "es"), ("es-MX", "es"), ("es-419", "es"), ("en", "en"), ("en-GB", "en"),
    ("zh-Hant", None), ("zh-TW", None), ("yue", None), ("ko", None), ("fr", None), ("ja-Latn", None), ("qaa", None),
])
def test_a_tag_picks_the_set_of_its_language_and_script(tag, chosen):
    assert shared_set(tag) == chosen


@pytest.mark.parametrize("tag", ["en", "es", "ja", "zh"])
def test_the_shared_sets_tags_answered_without_langcodes_are_what_langcodes_says(tag):
    """language_and_script and check_tag answer the shared sets' own tags from SHARED_SETS (an eval of such a
    persona never imports langcodes): the library must agree with that table."""
    import langcodes

    from guppy.spec.language import SHARED_SETS, check_tag, language_and_script

    found = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True)).maximize()
    assert SHARED_SETS[tag] == language_and_script(tag) == (found.language, found.script)
    assert langcodes.tag_is_valid(tag) and check_tag(tag) == tag


def test_the_script_comes_from_the_library_not_a_list():
    assert not is_spaced("cmn") and not is_cased("cmn")  # Mandarin: Hans, like zh
    assert not is_spaced("yue") and not is_cased("yue")  # Cantonese: Hant
    assert is_spaced("sr") and is_cased("sr")  # Serbian: Cyrillic


# A persona whose one topic is `common/greeting.jinja`; the sets are written into its own templates/
# (found before the shipped ones), so the test does not depend on what the shipped sets say.
SETS = {
    "common/en/_phrases.jinja": '{% macro hi() %}hello{% endmacro %}',
    "common/en/greeting.jinja": '{% import "common/_phrases.jinja" as say %}user: {{ say.hi() }}\nassistant: {{ say.hi() }} friend.\n',
    "common/ja/_phrases.jinja": '{% macro hi() %}こんにちは{% endmacro %}',
    "common/ja/greeting.jinja": '{% import "common/_phrases.jinja" as say %}user: {{ say.hi() }}\nassistant: {{ say.hi() }}、ともだち。\n',
}


def persona_in(tmp_path, language: str, template: str = "common/greeting.jinja", templates: dict | None = None):
    spec = {"identity": {"name": "lingo", "description": "-", "user": "-"}, "language": language,
            "style": {"min_reply_words": 1, "max_reply_words": 50, "max_sentence_words": 50},
            "lexicon": {"gadgets": ["TV"]}, "topics": {"greeting": {"template": template}}}
    return write_persona(tmp_path, spec, SETS if templates is None else templates)


@pytest.mark.parametrize("language, template, reply", [
    ("ja-JP", "common/greeting.jinja", "こんにちは、ともだち。"),
    ("en-GB", "common/greeting.jinja", "hello friend."),
    ("ja", "common/en/greeting.jinja", "hello friend."),  # an explicit set, and its import follows it
])
def test_common_resolves_to_the_persona_language_in_topics_and_imports(tmp_path, language, template, reply):
    loaded = load_persona(persona_in(tmp_path, language, template))
    assert Renderer(loaded, seed=0).render("greeting", 0)[-1] == ("assistant", reply)


@pytest.mark.parametrize("tag", ["zh-Hant", "yue", "ko", "fr"])
def test_a_language_with_no_shared_set_is_one_line_naming_what_to_do(tmp_path, tag):
    result = runner.invoke(app, ["persona", "validate", str(persona_in(tmp_path, tag))])
    one_line_error(result, "lingo.yaml", tag, "templates/lingo/", "--from")


def test_a_language_with_no_shared_set_works_with_its_own_topics(tmp_path):
    own = {"lingo/greeting.jinja": "user: 你好\nassistant: 你好，朋友。\n"}
    path = persona_in(tmp_path, "zh-Hant", "lingo/greeting.jinja", own)
    result = runner.invoke(app, ["persona", "validate", str(path)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("language", ["zh", "ja", "es", "en", "cmn"])
def test_blank_persona_in_each_language_validates_and_keeps_to_its_script(tmp_path, monkeypatch, language):
    """The shipped set and its skeleton: compiles, validates, and a zh/ja sample has no Latin letter."""
    monkeypatch.chdir(tmp_path)
    path = new_persona("blank", blank=True, language=language, root=tmp_path)
    assert re.search(rf"^language: {language}$", path.read_text(encoding="utf-8"), re.M)
    loaded, samples = sample_persona(path, n=40)
    assert loaded.spec.language == language and all(not s.problems for s in samples)
    if shared_set(language) in ("zh", "ja"):
        latin = [text for s in samples for _, text in s.conversation if LATIN.search(text)]
        assert latin == []


@pytest.mark.parametrize("tag, needle", [("zh-Hant", "templates/x/"), ("klingon", "BCP 47")])
def test_blank_in_a_language_without_a_set_or_a_bad_tag_is_one_line(tmp_path, monkeypatch, tag, needle):
    monkeypatch.chdir(tmp_path)
    one_line_error(runner.invoke(app, ["persona", "new", "x", "--blank", "--language", tag]), needle)
    assert not (tmp_path / "personas" / "x.yaml").exists()


@pytest.mark.parametrize("source, tag", [("kingyo", "ja-JP"), ("guppy", "en-GB")])  # guppy.yaml has no language line
def test_new_from_a_persona_with_language_sets_its_tag(tmp_path, source, tag):
    text = new_persona("koi", from_=source, language=tag, root=tmp_path).read_text(encoding="utf-8")
    assert re.findall(r"^language: .*$", text, re.M) == [f"language: {tag}"]
    assert text.startswith("# yaml-language-server: $schema=persona.schema.json\n")


# ---------------------------------------------------------------------------- the script check

def test_foreign_words_are_letters_of_another_script():
    assert foreign_words("i rest in我的园子at night.", "zh") == ["i", "rest", "in", "at", "night"]
    assert foreign_words("it is竹笋.", "en") == ["竹笋"]
    assert foreign_words("テレビよりＴＶ。ー々", "ja") == ["ＴＶ"]  # ー and 々 belong to every CJK script
    assert foreign_words("¿qué tal, niño?", "es-MX") == []


MIXED = {"panda/rest.jinja": "user: 你在哪里休息？\nassistant: i rest in{{ pick(lexicon.home) }}。我看{{ pick(lexicon.gadgets) }}。\n",
         "panda/ask.jinja": "user: where do you sleep\nassistant: 我在{{ pick(lexicon.home) }}睡觉。\n"}


def panda(tmp_path, language="zh"):
    spec = {"identity": {"name": "panda", "description": "-", "user": "-"}, "language": language,
            "style": {"min_reply_words": 1, "max_reply_words": 50, "max_sentence_words": 50},
            "lexicon": {"home": ["我的园子"], "gadgets": ["TV"]},
            "topics": {"rest": {"template": "panda/rest.jinja"}, "ask": {"template": "panda/ask.jinja"}}}
    return write_persona(tmp_path, spec, MIXED)


def test_sample_marks_latin_in_a_chinese_reply_and_prompt_with_template_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, samples = sample_persona(panda(tmp_path), n=6)
    found = {str(located) for s in samples for _, located in s.problems}
    assert any(where.startswith("templates/panda/rest.jinja:2: words in another script than zh's (Hans)")
               for where in found), found
    assert any(where.startswith("templates/panda/ask.jinja:1:") for where in found), found  # the prompt too
    assert not any("'TV'" in where for where in found)  # its own pool's word passes


@pytest.mark.parametrize("command", [["persona", "validate"], ["generate-data", "--n", "200", "--num-proc", "1"]])
def test_validate_and_generate_refuse_mixed_script(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, str(panda(tmp_path))])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "templates/panda/rest.jinja:2" in result.output and "another script" in result.output


def test_a_tag_whose_script_disagrees_with_the_text_is_caught(tmp_path):
    """`language: en` over Chinese text: not silently English, the script check names the lines."""
    with pytest.raises(GuppyError, match="another script than en's"):
        from pipeline.authoring import validate_persona
        validate_persona(panda(tmp_path, language="en"), samples=5)

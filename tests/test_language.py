"""A persona's language, stage by stage, Japanese and English side by side: the BCP 47 tag,
prompt normalization (dedup and the leak-free split), word matching, style lengths and case,
the renderer's line joining, the tokenizer's vocabulary, the dataset card; and a bad Japanese
template is one line naming file and line."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from cli import app
from guppy.data.split import leak_free_split, normalize_prompt
from guppy.model.tokenizer import train_tokenizer, vocabulary_for
from guppy.spec.language import is_cased, is_spaced, length
from guppy.spec.language import contains_any
from guppy.spec.persona import Persona, Style
from guppy.spec.personas import SHIPPED
from tests.conftest import write_persona

runner = CliRunner()

# A small goldfish that speaks Japanese: the full loop in tests/test_japanese.py uses it too.
JA_PERSONA = {
    "identity": {"name": "medaka", "description": "小さなテスト用の金魚。", "user": "テストする人"},
    "language": "ja",
    "style": {"lowercase": True, "max_sentence_words": 30, "min_reply_words": 2, "max_reply_words": 60},
    "lexicon": {
        "foods": ["ごはん", "エサ", "フレーク", "赤虫", "お麩", "ミジンコ"],
        "moods": ["ごきげん", "ねむたい", "のんびり", "うきうき", "しょんぼり"],
    },
    "topics": {
        "food": {"template": "medaka/food.jinja", "weight": 2},
        "mood": {"template": "medaka/mood.jinja", "weight": 1},
    },
    "associations": {
        "food": {"kind": "cue", "expect": ["ごはん", "エサ", "フレーク", "赤虫", "お麩", "ミジンコ", "食べ"],
                 "topics": ["food"], "probes": ["夢の中で何を食べるの？"]},
    },
}
# Lines of one turn are joined: without a space, for a language written without spaces.
JA_FOOD = """{% set food = pick(lexicon.foods) %}
user: {{ pick(["おなかすいた", food ~ "ほしい", food ~ "の時間", "ごはん？", "ねえ金魚、おなかすいた"]) }}{{ pick("？|。|いま？|") }}
assistant: {{ food }}{{ pick("が大好き|がいちばん|でしあわせ|！うん") }}。
{% if maybe() %}食べるの大好き。{% endif %}{{ pick("ぷくぷく。|もっとちょうだい。|") }}
{{ randint(1, 50) }}{{ pick(lexicon.moods) }}。
"""
JA_MOOD = """user: {{ pick("気分はどう|元気|調子はどう|今日はどんな感じ|ねむい|楽しい") }}{{ pick("|、今日は|、いま|、けさは|、金魚") }}？
assistant: {{ pick(lexicon.moods) }}だよ。{{ pick("水がきもちいい。|いっぱい泳いだ。|泡を見たよ。") }}{{ randint(1, 90) }}。
"""
JA_TEMPLATES = {"medaka/food.jinja": JA_FOOD, "medaka/mood.jinja": JA_MOOD}


# ---------------------------------------------------------------------------- the language tag

def test_the_tag_decides_case_and_spacing():
    assert (is_cased("en"), is_spaced("en")) == (True, True)
    assert (is_cased("ja"), is_spaced("ja")) == (False, False)
    assert (is_cased("zh-Hant-TW"), is_spaced("zh-Hant-TW")) == (False, False)
    assert (is_cased("ko"), is_spaced("ko")) == (False, True)  # Hangul: no case, but spaces
    assert (is_cased("ja-Latn"), is_spaced("ja-Latn")) == (True, True)  # romaji: the script subtag wins
    assert Persona.model_fields["language"].default == "en"


@pytest.mark.parametrize("tag", ["japanese", "ja_JP", "j", "ja-", "", "xx", "en-US-x"])
def test_a_bad_language_tag_is_one_line_naming_file_and_field(tmp_path, tag):
    persona = write_persona(tmp_path, {**JA_PERSONA, "language": tag}, JA_TEMPLATES)
    result = runner.invoke(app, ["persona", "validate", str(persona)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "medaka.yaml: language:" in lines[0] and "BCP 47" in lines[0], result.output


# ---------------------------------------------------------------------------- normalization

@pytest.mark.parametrize("variants", [
    ["人生の意味は何？", "人生の意味は何?", "人生の 意味は、何", "「人生の意味は何」！", "人生の意味は何。"],
    ["ｷﾝｷﾞｮ、ＴＶ見る？", "キンギョ TV見る", "キンギョtv見る"],  # half-/full-width folded, Latin lowercased
    ["What is the meaning of life?", "what is the  MEANING of life", "what is the meaning of life!!"],
    ["Ｈｉ， ｆｉｓｈ！", "hi fish"],
])
def test_variants_of_one_prompt_normalize_to_one_key(variants):
    assert len({normalize_prompt(v) for v in variants}) == 1, [normalize_prompt(v) for v in variants]


def test_normalization_keeps_what_makes_prompts_different():
    assert normalize_prompt("ごはんは好き？") != normalize_prompt("ごはんは嫌い？")
    assert normalize_prompt("do you like food") != normalize_prompt("do you like fo od")  # English spaces count
    assert normalize_prompt("スーパー") != normalize_prompt("スーパ")  # ー is a letter, not punctuation
    assert normalize_prompt("don't go") == "don't go"


def test_the_split_never_shares_a_japanese_prompt_that_differs_only_in_form():
    prompts = [f"{p}{mark}" for p in ("ごはん？", "エサほしい", "お麩の時間", "赤虫", "泳ごう", "ねよう") * 20
               for mark in ("", "？", "！", "、", " ")]
    is_test = leak_free_split(prompts, test_size=0.3, seed=0)
    train = {normalize_prompt(p) for p, t in zip(prompts, is_test) if not t}
    test = {normalize_prompt(p) for p, t in zip(prompts, is_test) if t}
    assert train and test and not train & test


# ---------------------------------------------------------------------------- word matching

@pytest.mark.parametrize("text, phrases, hit", [
    ("ごはんが大好き", ["ごはん"], True),           # Japanese: no spaces, found inside the sentence
    ("いまエサを食べたい。", ["食べ"], True),
    ("人生の意味は泳ぐこと。", ["ごはん", "食べ"], False),
    ("TVを見た", ["tv"], True),                      # a Latin word next to kana is still a whole word
    ("ごはんeatを", ["eat"], True),
    ("food is great", ["eat"], False),              # English: never inside a word
    ("i eat.", ["eat"], True),
    ("the meal was tasty", ["meal", "tasty"], True),
    ("oatmeal", ["meal"], False),
    ("Brine Shrimp!", ["brine shrimp"], True),       # case-insensitive, phrases of several words
])
def test_word_matching_in_japanese_and_english(text, phrases, hit):
    assert contains_any(text, phrases) is hit


# ---------------------------------------------------------------------------- style

def style(language: str, **rules) -> Style:
    return Persona.model_validate({"identity": {"name": "s", "description": "-", "user": "-"}, "language": language,
                                   "style": rules, "lexicon": {}, "topics": {"t": {"template": "t.jinja"}}}).style


def test_lengths_count_characters_in_japanese_and_words_in_english():
    assert length("ごはんが大好き。", "ja") == 7 and length("i love food.", "en") == 3
    ja = style("ja", max_sentence_words=10, min_reply_words=2, max_reply_words=20)
    assert all(ja.check("ごはんが大好き。エサもね。").values())
    assert not ja.check("ごはんがいちばん大好きなんだよほんとうに。")["sentence_length"]  # 20 characters
    assert not ja.check("あ")["reply_length"]
    en = style("en", max_sentence_words=4, min_reply_words=2, max_reply_words=20)
    assert all(en.check("i love food. yes.").values())
    assert not en.check("i love food so much.")["sentence_length"]


def test_lowercase_applies_only_where_the_script_has_case():
    assert style("ja", lowercase=True).check("TVはごはんじゃない。")["lowercase"]
    assert not style("en", lowercase=True).check("TV is not food.")["lowercase"]


def test_japanese_replies_render_without_spaces_and_keep_their_latin(tmp_path):
    from guppy.spec.personas import load_persona
    from pipeline.render import Renderer

    spec = {**JA_PERSONA, "topics": {"t": {"template": "medaka/t.jinja"}}, "associations": {}}
    persona = write_persona(tmp_path, spec, {"medaka/t.jinja": "user: テレビ\n  見る？\nassistant: TV は\n  しらない。\n  OK Google も。\n"})
    conv = Renderer(load_persona(persona), seed=0).render("t", 0)
    assert conv == (("user", "テレビ見る？"), ("assistant", "TVはしらない。OK Googleも。"))  # no lowercasing either


# ---------------------------------------------------------------------------- tokenizer

def test_a_script_of_many_characters_gets_one_token_per_character():
    """3,000 distinct kanji asked into 300 tokens: each would stay 3 byte tokens; the vocabulary grows
    to spell each one as one token. English text asks what it asks."""
    kanji = [chr(0x4E00 + i) for i in range(3000)]
    texts = ["".join(kanji[i:i + 20]) for i in range(0, 3000, 10)] * 2
    tok = train_tokenizer(texts, vocab_size=300)
    assert tok.vocab_size > 3000
    assert len(tok.encode("".join(kanji[100:120]))) <= 20
    english = ["i love food and flakes", "the tank is warm today"] * 50
    assert vocabulary_for(english, 300) == 300


def test_tokens_per_character_japanese_and_english(tmp_path):
    """Both shipped corpora, 2,000 conversations each, at the trainer's default vocabulary."""
    from guppy.data.reader import flat_messages
    from pipeline.generate import generate_data

    per_char = {}
    for name in ("guppy", "kingyo"):
        generate_data(persona=SHIPPED / "personas" / f"{name}.yaml", n=2000, out=tmp_path / name)
        import datasets
        _, _, contents = flat_messages(datasets.load_from_disk(str(tmp_path / name))["train"])
        tok = train_tokenizer(contents)
        per_char[name] = sum(len(tok.encode(c)) for c in contents) / sum(len(c) for c in contents)
    # Japanese packs more meaning into a character: more tokens per character, still well under one
    assert per_char["guppy"] < per_char["kingyo"] < 0.6, per_char


# ---------------------------------------------------------------------------- card, bad templates

def test_the_dataset_card_names_the_language(tmp_path):
    from pipeline.generate import generate_data

    persona = write_persona(tmp_path, JA_PERSONA, JA_TEMPLATES)
    generate_data(persona=persona, n=200, out=tmp_path / "data")
    card = (tmp_path / "data" / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["language"] == ["ja"]
    # the English frame stays apart from the Japanese text: no "金魚。." nor "The user is テスト"
    assert "- the character: 小さなテスト用の金魚。\n- the user: テストする人\n" in card
    assert "。." not in card and "The user is" not in card


@pytest.mark.parametrize("typo, needles", [
    ("{{ pick(lexicon.foodz) }}", ["food.jinja:4", "foodz"]),        # an unknown pool
    ("{% if maybe() %}食べるの大好き。", ["food.jinja:", "syntax"]),     # an unclosed block
])
def test_a_typo_in_a_japanese_template_is_one_line_naming_file_and_line(tmp_path, typo, needles):
    broken = JA_FOOD.replace("{% if maybe() %}食べるの大好き。{% endif %}", typo)
    persona = write_persona(tmp_path, JA_PERSONA, {**JA_TEMPLATES, "medaka/food.jinja": broken})
    for args in (["persona", "validate", str(persona)], ["generate-data", str(persona), "--out", str(tmp_path / "o")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and all(n in lines[0] for n in needles), result.output
    assert not (tmp_path / "o").exists()

"""A Japanese persona end to end on tiny configs: generate -> train -> its food word becomes likely
after its cue -> eval, chat and export work, and transformers' greedy ids equal Guppy's sampler on a
Japanese prompt. Also: `persona new --from kingyo` scaffolds a Japanese persona that works as-is."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from guppy.presets import PRESETS
import torch
from typer.testing import CliRunner

from cli import app
from guppy.model.checkpoint import load_model
from guppy.model.sampler import complete, generate
from guppy.spec.personas import load_persona
from tests.conftest import write_persona

runner = CliRunner()
MICRO = dict(PRESETS["tiny"], about="tests only", n_layer=2, n_head=2, d_model=64, d_ff=256, context=64)
CUE = "おなかすいた？"


@pytest.fixture(scope="module")
def world(medaka_world) -> Path:
    """The session's medaka folder (tests/trained.py: 3,000 conversations, a micro model trained 300 steps);
    cwd is the folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(medaka_world)
        mp.setitem(PRESETS, "micro", MICRO)
        yield medaka_world


def test_japanese_data_is_rendered_without_spaces_and_split_leak_free(world):
    from guppy.data.split import normalize_prompt

    dd = datasets.load_from_disk(str(world / "runs/medaka/data"))
    replies = [m["content"] for row in dd["train"]["messages"] for m in row if m["role"] == "assistant"]
    assert not any(" " in r for r in replies)
    train = {normalize_prompt(m[0]["content"]) for m in dd["train"]["messages"]}
    test = {normalize_prompt(m[0]["content"]) for m in dd["test"]["messages"]}
    assert test and not train & test


def test_the_food_word_becomes_likely_after_its_cue_and_eval_scores_it(world):
    from guppy.eval.commands import evaluate

    report = evaluate(persona="medaka", samples=2)
    food = report["associations"]["food"]
    assert food["hit_rate"]["ceiling"] > 0.95 and food["hit_rate"]["model"] > 0.5
    # Food words far likelier after the cue than after other prompts (a token that starts with one,
    # エサが, counts), and than for an untrained model. The hit rate's floor is higher in Japanese:
    # a food word is found anywhere in a reply, so random tokens hold one more often.
    assert food["lift"]["model"] > 0.3 and food["lift"]["model"] > food["lift"]["floor"] + 0.3, food
    assert food["hit_rate"]["model"] > food["hit_rate"]["floor"] + 0.2 and report["persona_score"] > 0.5
    assert report["style"]["model"]["all"] > 0.8  # lengths counted in characters
    # distinct-2 over characters: split at spaces, every reply would be one "word", with no pairs at all
    assert 0 < report["diversity"]["ceiling"]["distinct_2"] < 0.5
    # The report says its language, and its page says why the floor's replies are cut short.
    assert report["language"] == "ja"
    assert "cut to the model's reply lengths" in (world / "runs/medaka/eval/report.md").read_text(encoding="utf-8")


def test_the_floor_says_no_more_than_the_model_it_is_the_floor_for(world, monkeypatch):
    """Random tokens are long phrases of the persona's replies and a word is found anywhere, so an
    untrained model hits by its length alone; eval cuts its replies to the trained model's, one by one."""
    from guppy.eval import evaluate as ev
    from guppy.eval.commands import evaluate
    from guppy.eval.evaluate import eval_data_from, score_model

    spec = load_persona("medaka").spec
    data = eval_data_from(datasets.load_from_disk("runs/medaka/data"))
    model, tokenizer, _ = load_model(world / "runs/medaka")
    untrained = ev.untrained_like(model, 0)
    uncut = score_model(untrained, tokenizer, spec, data, samples=2, seed=0, with_lift=False)
    half = {a: [n // 2 for n in ns] for a, ns in uncut["reply_chars"].items()}
    cut = score_model(untrained, tokenizer, spec, data, samples=2, seed=0, with_lift=False, as_long_as=half)
    assert cut["reply_chars"] == half
    nothing = {a: [0] * len(ns) for a, ns in half.items()}  # hits are counted on what is left after the cut
    assert uncut["hit_rate"]["food"] > 0 and score_model(untrained, tokenizer, spec, data, samples=2, seed=0,
                                                         with_lift=False, as_long_as=nothing)["hit_rate"]["food"] == 0

    calls = []
    def recorded(*args, **kwargs):
        calls.append((kwargs.get("as_long_as"), score_model(*args, **kwargs)))
        return calls[-1][1]
    monkeypatch.setattr(ev, "score_model", recorded)
    evaluate(persona="medaka", samples=1)
    (none, model_f), (lengths, floor_f) = calls  # the model, then its floor
    assert none is None and lengths == model_f["reply_chars"]
    assert all(f <= m for a in lengths for f, m in zip(floor_f["reply_chars"][a], lengths[a], strict=True))


# kingyo's words are found anywhere in a reply, so none may be part of a word that means something else.
@pytest.mark.parametrize("reply, association, hit", [
    ("今日もしあわせ。", "water", False),  # あわ (bubbles) is in しあわせ (happy)
    ("すみずみまで見回りするの。", "water", False),  # みず (water) in すみずみ
    ("ひとつにえらべないよ。", "water", False),  # えら (gills) in えらべない (can't choose)
    ("えらで息をするの。", "water", True),
    ("泡をふくよ。", "water", True),
    ("赤虫ならいますぐ食べられるよ。", "human_things", False),  # a food line, not confusion
    ("それって食べられるの？", "human_things", True),
    ("ごはんがいちばん。", "food", True),
])
def test_kingyo_words_match_only_what_they_mean(reply, association, hit):
    assert load_persona("kingyo").spec.associations[association].hit(reply) is hit


def test_kingyo_on_the_shared_japanese_set_keeps_its_style_and_its_loves():
    """kingyo's love topic is the shared common/ja/love.jinja now: in style, and about its own loves."""
    from pipeline.authoring import sample_persona

    loaded, samples = sample_persona("kingyo", topic="love", n=400)
    assert loaded.spec.topics["love"].template == "common/love.jinja"
    assert not [s.problems for s in samples if s.problems]
    replies = [r for s in samples for role, r in s.conversation if role == "assistant"]
    loves = loaded.spec.lexicon["loves"]
    assert sum(any(love in r for love in loves) for r in replies) > 0.5 * len(replies)


def test_chat_answers_in_japanese(world):
    result = runner.invoke(app, ["chat", "medaka", "--prompt", CUE, "--seed", "0"])
    assert result.exit_code == 0, result.output
    reply = result.output.strip()
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in reply), reply


def test_transformers_greedy_ids_equal_guppys_sampler_on_a_japanese_prompt(world):
    transformers = pytest.importorskip("transformers", reason="needs the hf extra: pip install 'guppy-persona[hf]'")
    AutoModelForCausalLM, AutoTokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer

    from guppy.export.hf import export

    folder, = export(persona="medaka")
    card_header = (folder / "README.md").read_text(encoding="utf-8").split("---\n")[1]
    assert "language:\n- ja\n" in card_header  # the model card names the persona's language, as the data card does
    hf, tok = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    model, tokenizer, _ = load_model(world / "runs/medaka")
    chat = [{"role": "user", "content": CUE}]
    inputs = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt = inputs["input_ids"][0].tolist()
    assert prompt == tokenizer.encode_prompt(chat)
    mine = torch.stack(list(generate(model, [prompt], max_new_tokens=24, temperature=0.0, stop_id=tokenizer.im_end_id)),
                       dim=1)[0].tolist()
    theirs = hf.generate(**inputs, do_sample=False, max_new_tokens=24)[0, len(prompt):].tolist()
    assert theirs == mine and mine[-1] == tokenizer.im_end_id
    reply = tokenizer.decode(mine)
    assert reply == complete(model, tokenizer, [CUE], temperature=0.0, max_new_tokens=24)[0]
    assert any("\u3040" <= ch <= "\u9fff" for ch in reply), reply


def test_compare_scores_the_japanese_persona_against_an_english_one(world):
    from guppy.eval.commands import compare
    from guppy.train.trainer import train

    write_persona(world)  # the English mini fish beside it, trained briefly
    assert runner.invoke(app, ["generate-data", "mini", "--n", "1500"]).exit_code == 0
    train(persona="mini", preset="micro", max_steps=60, batch_size=16, lr=1e-2, warmup_steps=10, eval_every=60,
          eval_batches=1, log_every=10, vocab_size=400, progress=False)
    matrix = compare(personas=["medaka", "mini"], samples=1)["matrix"]  # rows: models; columns: personas
    assert matrix["medaka"]["medaka"] > matrix["mini"]["medaka"] + 0.3  # English words never hit Japanese ones
    assert matrix["medaka"]["medaka"] > matrix["medaka"]["mini"] + 0.3


def test_new_persona_from_kingyo_is_japanese_and_works_as_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["persona", "new", "koi", "--from", "kingyo"])
    assert result.exit_code == 0, result.output
    spec = load_persona("koi").spec
    assert spec.name == "koi" and spec.language == "ja"
    assert {t.template.split("/")[0] for t in spec.topics.values()} == {"koi", "common"}  # common/: the ja set
    for template in (tmp_path / "templates" / "koi").glob("*.jinja"):
        assert '"kingyo/' not in template.read_text(encoding="utf-8")
    result = runner.invoke(app, ["generate-data", "koi", "--n", "500", "--out", "data"])
    assert result.exit_code == 0, result.output
    train = datasets.load_from_disk("data")["train"]
    assert set(train["persona"]) == {"koi"} and "ごはん" in "".join(m[-1]["content"] for m in train["messages"])

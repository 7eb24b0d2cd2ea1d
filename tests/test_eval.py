"""`guppy eval`, `guppy compare` and `guppy run`: the metrics are honest.

Two small personas with different associations (a fish that answers "food", a cat that answers
"nap"), each generated and trained for a few seconds. A model must score high on its own persona,
near the floor on the other; an untrained model at the floor; held-out data at the ceiling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from guppy.eval.commands import compare, evaluate
from guppy.eval.evaluate import eval_data_from, persona_score, score_model, untrained_like
from guppy.eval.replies import ceiling_replies, reply_figures
from guppy.presets import PRESETS
from tests.bench.shuffle_replies import shuffled_replies
from tests.conftest import FOOD, MINI_PERSONA, write_persona

runner = CliRunner()
# ReLU: the bounds below were set on these micro models when tiny was ReLU; tiny's GELU (7d90e96) trained them
# just under them (hit rate 0.83 against floor + 0.2 = 0.87; the diagonal exactly 0.5, not above it).
MICRO = dict(PRESETS["tiny"], about="tests only", n_layer=2, n_head=2, d_model=64, d_ff=256, context=64,
             activation="relu")
FAST = dict(preset="micro", batch_size=16, lr=1e-2, min_lr=1e-3, warmup_steps=10, eval_every=60, eval_batches=2,
            log_every=10, vocab_size=400, progress=False)

# The conftest fish, expecting any food it knows: its data then shows the association in every reply.
FISH = {**MINI_PERSONA, "associations": {"food": {
    "kind": "cue", "expect": ["food", *MINI_PERSONA["lexicon"]["foods"]], "topics": ["food"],
    "probes": ["what do you dream of eating"]}}}
# Its moods asked many ways, so the test split holds mood prompts: the controls of food's lift are then
# questions the fish was taught to answer without food, not made-up ones whose answer no data decides.
FISH_MOOD = """user: {{ pick("how are you|how do you feel|are you ok|how is the water|how was your day|what is up") }} {{ pick("today|now|this morning|tonight|fish|little one|") }}
assistant: i feel {{ pick(lexicon.moods) }}. {{ pick("the water is nice.|i swam a lot.|i saw a bubble.") }} {{ randint(1, 90) }}.
"""
CAT = {
    "identity": {"name": "kitty", "description": "a sleepy test cat.", "user": "the tester"},
    "style": {"lowercase": True, "max_sentence_words": 12, "min_reply_words": 2, "max_reply_words": 30},
    "lexicon": {"spots": ["sunbeam", "windowsill", "blanket", "sofa", "box"], "moods": ["lazy", "grumpy", "soft"]},
    "topics": {"naps": {"template": "kitty/naps.jinja", "weight": 2}, "mood": {"template": "kitty/mood.jinja", "weight": 1}},
    "associations": {
        "naps": {"kind": "cue", "expect": ["nap", "naps", "sleep"], "topics": ["naps"],
                 "probes": ["what is the best part of the day"]},
    },
}
NAPS = """{% set spot = pick(lexicon.spots) %}
user: {{ pick(["what do you want", "what are you doing", "any plans", "what now, cat", "what is life about"]) }} {{ pick("today|now|tonight|") }}
assistant: {{ pick("a nap|sleep|naps, obviously|a long nap") }} on the {{ spot }}. {{ pick("do not wake me.|purr.|") }} {{ randint(1, 50) }}
"""
CAT_MOOD = """user: how do you feel {{ pick("today|now|this morning|tonight|cat") }}
assistant: i am {{ pick(lexicon.moods) }}. {{ pick("the box is mine.|move.|i saw a bird.") }} {{ randint(1, 90) }}.
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A working folder with personas/{mini,kitty}.yaml and trained runs/{mini,kitty}; cwd is it."""
    from guppy.train.trainer import train

    root = tmp_path_factory.mktemp("world")
    write_persona(root, FISH, {"mini/food.jinja": FOOD, "mini/mood.jinja": FISH_MOOD})
    write_persona(root, CAT, {"kitty/naps.jinja": NAPS, "kitty/mood.jinja": CAT_MOOD})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setitem(PRESETS, "micro", MICRO)
        for name in ("mini", "kitty"):
            result = runner.invoke(app, ["generate-data", name, "--n", "3000"])
            assert result.exit_code == 0, result.output
            train(persona=name, max_steps=180, **FAST)
        # The fish's corpus with its replies shuffled across prompts: the same words, answering nothing.
        shuffled_replies(root / "runs/mini/data", root / "shuffled")
        train(persona="mini", data="shuffled", out=root / "runs/mini-shuffled", max_steps=180, **FAST)
        yield root


def test_a_model_scores_high_on_its_own_persona(world):
    report = evaluate(persona="mini", samples=2)
    assoc = report["associations"]["food"]
    assert assoc["hit_rate"]["model"] > assoc["hit_rate"]["floor"] + 0.2  # random tokens name a food often
    assert assoc["hit_rate"]["ceiling"] > 0.95 and report["persona_score"] > 0.5
    assert report["style"]["model"]["all"] > 0.8 and report["style"]["floor"]["all"] < 0.5
    assert report["bits_per_byte"]["model"] < 0.5 * report["bits_per_byte"]["floor"]
    assert assoc["lift"]["model"] > 0.5  # "food" words far likelier after the cue than after other prompts
    for name in ("report.json", "report.md", "associations.png", "loss.png"):
        assert (world / "runs/mini/eval" / name).stat().st_size > 0
    assert json.loads((world / "runs/mini/eval/report.json").read_text())["persona_score"] == report["persona_score"]
    assert report["language"] == "en" and "reply lengths" not in (world / "runs/mini/eval/report.md").read_text()


def test_same_seed_gives_an_identical_report(world):
    evaluate(persona="kitty", samples=2, seeds=[3])
    first = (world / "runs/kitty/eval/report.json").read_bytes()
    evaluate(persona="kitty", samples=2, seeds=[3])
    assert (world / "runs/kitty/eval/report.json").read_bytes() == first
    evaluate(persona="kitty", samples=2, seeds=[4])
    assert (world / "runs/kitty/eval/report.json").read_bytes() != first


def test_compare_diagonal_dominates_and_other_personas_score_near_the_floor(world):
    result = compare(personas=["mini", "kitty"], samples=2)
    m = result["matrix"]
    assert m["mini"]["mini"] > 0.5 and m["kitty"]["kitty"] > 0.5
    assert m["mini"]["kitty"] < 0.15 and m["kitty"]["mini"] < 0.15  # the fish never naps, the cat never eats
    assert min(result["diagonal_margin"].values()) > 0.4
    assert (world / "runs/compare/matrix.png").stat().st_size > 0
    assert json.loads((world / "runs/compare/matrix.json").read_text())["matrix"] == m


def test_untrained_scores_at_the_floor_and_held_out_data_at_the_ceiling(world):
    from datasets import load_from_disk

    from guppy.model.checkpoint import load_model
    from guppy.spec.personas import load_persona

    spec = load_persona("mini").spec
    data = eval_data_from(load_from_disk("runs/mini/data"))
    model, tokenizer, _ = load_model(Path("runs/mini"))
    floor = score_model(untrained_like(model, 0), tokenizer, spec, data, samples=2, seed=0, with_lift=False)
    ceiling = reply_figures(spec, ceiling_replies(spec, data), set())
    # One untrained model against another scores 0 give or take the noise of a few prompts (with 2 samples a
    # prompt, 0.33 for 1 pair in 10): the median of 3 pairs, at 8 samples a prompt.
    scores = [persona_score(*(score_model(untrained_like(model, s), tokenizer, spec, data, samples=8, seed=s,
                                          with_lift=False) for s in (other, own)), ceiling)[0]
              for own, other in ((0, 3), (1, 4), (2, 5))]
    assert sorted(scores)[1] < 0.15
    held_out = {"food": [c[-1]["content"] for c in data.test_by_topic["food"]]}  # never trained on, same source
    assert persona_score(reply_figures(spec, held_out, set()), floor, ceiling)[0] > 0.9


def test_an_english_floor_is_never_cut_to_the_models_lengths(world):
    """English keeps its yardstick: a word must stand alone there, and the published scores had an uncut floor."""
    from datasets import load_from_disk

    from guppy.model.checkpoint import load_model
    from guppy.spec.personas import load_persona

    spec = load_persona("mini").spec
    data = eval_data_from(load_from_disk("runs/mini/data"))
    model, tokenizer, _ = load_model(Path("runs/mini"))
    untrained = untrained_like(model, 0)
    uncut = score_model(untrained, tokenizer, spec, data, samples=2, seed=0, with_lift=False)
    one_char = {a: [1] * len(n) for a, n in uncut["reply_chars"].items()}
    assert score_model(untrained, tokenizer, spec, data, samples=2, seed=0, with_lift=False, as_long_as=one_char) == uncut
    assert min(n for ns in uncut["reply_chars"].values() for n in ns) > 1


def test_run_does_everything_end_to_end(world):
    kitten = {**CAT, "identity": {**CAT["identity"], "name": "kitten"}}
    write_persona(world, kitten, {"kitty/naps.jinja": NAPS, "kitty/mood.jinja": CAT_MOOD})
    result = runner.invoke(app, ["run", "kitten", "--n", "1000", "--max-steps", "20", "--n-layer", "1",
                                 "--eval-every", "10", "--vocab-size", "400"])
    assert result.exit_code == 0, result.output
    assert "persona score" in result.output and "kitten:" in result.output  # the eval table and sample replies
    assert "generate" in result.output and "train" in result.output and "total" in result.output  # stage times
    for path in ("data/dataset_dict.json", "ckpt/best/model.safetensors", "eval/report.json"):
        assert (world / "runs/kitten" / path).exists(), path


# ---------------------------------------------------------------------------------- the proof tells models apart

def test_the_report_has_on_topic_novelty_turns_and_intervals(world):
    report = evaluate(persona="mini", samples=2)
    on_topic = report["on_topic"]
    assert on_topic["ceiling"] > 0.9 and on_topic["score"] >= 0.5  # food and mood replies are easy to tell apart
    assert abs(on_topic["floor"] - 0.5) < 0.1  # two topics asked equally: a shuffled reply is right half the time
    assert on_topic["ci"][0] <= on_topic["score"] <= on_topic["ci"][1]
    assert [r["topic"] for r in on_topic["per_topic"]] and on_topic["per_topic"][0]["example"]["reply"]
    lo, hi = report["persona_score_ci"]
    assert lo <= report["persona_score"] <= hi and hi - lo > 0  # an interval, not a point
    assert len(report["turns"]["per_turn"]) == 4 and report["turns"]["single_turn_data"]
    assert all(0 <= t["on_topic"] <= 1 for t in report["turns"]["per_turn"])
    assert 0 <= report["novel"] <= 1 and report["novelty"]["ceiling"]["sentences"] > 0.5  # a templated corpus
    assert report["headline"].startswith(f"persona {report['persona_score']:.2f} [")
    assert "on-topic" in report["headline"] and "4th turn" in report["headline"]
    md = (world / "runs/mini/eval/report.md").read_text()
    assert md.splitlines()[2] == f"**{report['headline']}**" and (world / "runs/mini/eval/turns.png").stat().st_size > 0


def test_a_model_trained_on_shuffled_replies_keeps_its_words_but_answers_nothing(world):
    normal = evaluate(persona="mini", samples=2)
    # Measured against the real corpus: its own (shuffled) data would teach the topic classifier nonsense.
    shuffled = evaluate(persona="mini", run=world / "runs/mini-shuffled", data=world / "runs/mini/data", samples=2)
    assert normal["on_topic"]["score"] >= 0.5
    assert shuffled["on_topic"]["score"] <= 0.2  # at the floor: it answers from its usual mix
    assert shuffled["on_topic"]["ci"][1] < normal["on_topic"]["ci"][0]  # apart by more than the noise
    food = shuffled["associations"]["food"]["hit_rate"]
    assert food["model"] > food["floor"] + 0.2  # but it still talks about food


def test_the_datas_own_replies_reach_the_ceiling_and_a_parrot_is_not_novel(world):
    from datasets import load_from_disk

    from guppy.eval.evaluate import answer_figures
    from guppy.eval.on_topic import fit_classifier
    from guppy.spec.personas import load_persona

    spec = load_persona("mini").spec
    data = eval_data_from(load_from_disk("runs/mini/data"))
    classifier = fit_classifier(data.train_by_topic, "en")
    own = {c[0]["content"]: c[-1]["content"] for convs in data.test_by_topic.values() for c in convs}
    held_out = answer_figures(lambda prompts: [own[p] for p in prompts], spec, data, seed=0, classifier=classifier)
    assert held_out["on_topic"]["score"] > 0.9
    train = sorted(data.train_replies)
    parrot = answer_figures(lambda prompts: [train[hash(p) % len(train)] for p in prompts], spec, data, seed=0,
                            classifier=classifier)
    assert parrot["novelty"]["model"]["novel"] == 0.0 and parrot["novelty"]["model"]["stitched"] == 1.0
    assert held_out["novelty"]["model"]["novel"] > 0.5  # the held-out replies are mostly new (random numbers)


def test_another_personas_model_scores_low_and_any_model_meets_any_persona(world, tmp_path):
    """`guppy eval mini --run runs/kitty` asks the cat the fish's questions (the fish's own data); an expected
    word far longer in the model's tokens than its context leaves no traceback."""
    cat_on_fish = evaluate(persona="mini", run=world / "runs/kitty", samples=2)
    # (Its on-topic says little here: the classifier knows two topics, and a nap reads as "not a mood", so food.)
    assert cat_on_fish["persona_score"] < 0.15 and cat_on_fish["on_topic"] is not None
    long_word = {**FISH, "identity": {**FISH["identity"], "name": "longword"}, "associations": {"food": {
        **FISH["associations"]["food"], "expect": ["ごはんをたべたいなあおなかすいたよほんとうに", "flakes"]}}}
    path = write_persona(tmp_path, long_word, {"mini/food.jinja": FOOD, "mini/mood.jinja": FISH_MOOD})
    result = runner.invoke(app, ["eval", str(path), "--run", str(tmp_path / "run"), "--data", "runs/mini/data"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # a run that is not there gets no folder from eval
    shutil.copytree(world / "runs/mini", tmp_path / "run", ignore=shutil.ignore_patterns("eval"))
    result = runner.invoke(app, ["eval", str(path), "--run", str(tmp_path / "run"), "--data", "runs/mini/data"])
    assert result.exit_code == 0, result.output
    assert result.output.lstrip().startswith("persona ")  # the headline comes first


def test_seeds_give_a_median_and_a_range(world):
    report = evaluate(persona="kitty", samples=1, seeds=[0, 1, 2])
    spread = report["over_seeds"]
    assert spread["seeds"] == [0, 1, 2] and len(spread["persona_score"]["values"]) == 3
    assert spread["persona_score"]["min"] <= spread["persona_score"]["median"] <= spread["persona_score"]["max"]
    assert "3 seeds" in report["headline"]


def test_compare_marks_a_margin_within_noise(world):
    from guppy.eval.commands import diagonal_margins

    matrix = {"a": {"a": 0.80, "b": 0.78}, "b": {"a": 0.1, "b": 0.9}}
    ci = {"a": {"a": [0.70, 0.88], "b": [0.69, 0.85]}, "b": {"a": [0.05, 0.15], "b": [0.85, 0.95]}}
    result = diagonal_margins(["a", "b"], matrix, ci)
    assert result["within_noise"] == {"a": True, "b": False} and result["diagonal_margin"]["b"] == 0.8


# ---------------------------------------------------------------------------------- bad input

def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output


def test_eval_without_a_trained_model_is_refused(world, tmp_path):
    assert_one_line_error(runner.invoke(app, ["eval", "mini", "--run", str(tmp_path / "nothing")]), "no trained model")


def test_eval_of_a_persona_without_associations_is_refused(world, tmp_path):
    spec = {**MINI_PERSONA, "identity": {**MINI_PERSONA["identity"], "name": "plain"}, "associations": {}}
    path = write_persona(tmp_path, spec)
    assert_one_line_error(runner.invoke(app, ["eval", str(path), "--run", "runs/mini"]), "no associations")
    assert_one_line_error(runner.invoke(app, ["compare", "mini", str(path)]), "no associations")


def test_eval_of_a_model_whose_tokenizer_does_not_match_is_refused(world, tmp_path):
    run = tmp_path / "mixed"
    shutil.copytree(world / "runs/mini", run)
    for folder in (run / "ckpt/best", run / "ckpt/last"):
        shutil.copy(world / "runs/kitty/ckpt/best/tokenizer.json", folder / "tokenizer.json")
    assert_one_line_error(runner.invoke(app, ["eval", "mini", "--run", str(run)]), "tokenizer")


def test_compare_needs_two_personas_with_models(world):
    assert_one_line_error(runner.invoke(app, ["compare", "mini"]), "at least two")
    assert_one_line_error(runner.invoke(app, ["compare", "mini", "guppy"]), "no trained model")


def test_eval_refuses_bad_seeds_and_a_data_path_that_is_not_a_dataset(world, tmp_path):
    for bad in ("", "a,b", "1,,2", "-1", "1,1", str(2**70)):
        assert_one_line_error(runner.invoke(app, ["eval", "mini", "--seeds", bad]), "--seed")
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(runner.invoke(app, ["eval", "mini", "--data", str(tmp_path / "notes.txt")]), "notes.txt")
    assert_one_line_error(runner.invoke(app, ["eval", "mini", "--data", str(tmp_path)]), str(tmp_path))


def test_compare_refuses_a_persona_named_twice(world):
    assert_one_line_error(runner.invoke(app, ["compare", "mini", "mini"]), "twice")


def test_eval_and_compare_on_a_device_that_is_not_there_are_one_line(world, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_one_line_error(runner.invoke(app, ["eval", "mini", "--device", "cuda"]), "--device cuda")
    assert_one_line_error(runner.invoke(app, ["compare", "mini", "kitty", "--device", "cuda"]), "--device cuda")


def test_the_classifier_fitted_in_a_second_process_reads_replies_as_the_one_fitted_here(world, monkeypatch, tmp_path):
    """On a GPU the topic classifier is fitted and asked in a second process while the model samples (on_topic.py:
    ClassifierElsewhere), which also works out the ceiling's figures. Asked for here, on a CPU: the same figures as
    all done in this process, and fitted there (this process's fit_classifier is made to fail); what it fitted is
    cached, so this process then reads it without a fit."""
    import guppy.eval.on_topic as on_topic
    from guppy.elsewhere import SKLEARN, Elsewhere
    from guppy.eval.commands import load_eval_data
    from guppy.eval.evaluate import measure
    from guppy.model.checkpoint import load_model
    from guppy.spec.personas import load_persona
    from guppy.store.paths import RunPaths

    model, tokenizer, _ = load_model(world / "runs/mini")
    spec = load_persona("mini").spec
    data = load_eval_data(RunPaths(world / "runs/mini"), "mini")
    here = measure(model, tokenizer, spec, data, samples=2, seed=0)

    def not_here(*args, **kwargs):
        raise AssertionError("fitted in this process")

    monkeypatch.setattr(on_topic, "fit_classifier", not_here)
    monkeypatch.setenv("GUPPY_CACHE", str(tmp_path / "empty"))  # nothing fitted yet: the second process must fit
    with Elsewhere(warm=SKLEARN) as elsewhere:
        there = measure(model, tokenizer, spec, data, samples=2, seed=0, elsewhere=elsewhere)
    assert there == here  # every figure, the ceiling's worked out there too

    # guppy eval gives the ceiling to a third process (the charts', idle until the report): the same figures, and
    # the ceiling's reply_figures is what goes there.
    with Elsewhere(warm=SKLEARN) as elsewhere, Elsewhere() as third:
        sent, send = [], third.submit
        third.submit = lambda fn, *args: sent.append(fn.__name__) or send(fn, *args)
        assert measure(model, tokenizer, spec, data, samples=2, seed=0, elsewhere=elsewhere,
                       ceiling_elsewhere=third) == here
    assert sent == ["reply_figures"]
    assert here["on_topic"]["model"] > 0.5  # the classifier read replies (not vacuous)
    assert measure(model, tokenizer, spec, data, samples=2, seed=0)["on_topic"] == here["on_topic"]  # from the cache
    monkeypatch.setenv("GUPPY_CACHE", str(tmp_path / "empty again"))
    with pytest.raises(AssertionError, match="fitted in this process"):
        measure(model, tokenizer, spec, data, samples=2, seed=0)


def test_a_second_eval_takes_what_it_reads_from_the_dataset_out_of_the_cache(world, monkeypatch):
    """guppy eval reduces a dataset to its prompts, replies and their sentences once (guppy/eval/commands.py:
    eval_data_of); a second eval of the same data reads none of it and writes the same report, byte for byte."""
    import guppy.eval.commands as commands
    import guppy.eval.evaluate as evaluate_module
    from guppy.store.dataset_cache import cache_root

    evaluate(persona="kitty", samples=2, seeds=[3])
    first = (world / "runs/kitty/eval/report.json").read_bytes()
    assert len(list((cache_root() / "eval-data").iterdir())) == 1

    def not_read(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(commands, "load_conversations", not_read)
    monkeypatch.setattr(evaluate_module, "training_sentences", not_read)  # nor split the replies into sentences
    evaluate(persona="kitty", samples=2, seeds=[3])
    assert (world / "runs/kitty/eval/report.json").read_bytes() == first
    monkeypatch.undo()
    monkeypatch.setattr(commands, "load_conversations", not_read)
    with pytest.raises(AssertionError, match="read again"):  # another dataset is read (not vacuous)
        evaluate(persona="mini", samples=2)


def test_charts_drawn_in_a_second_process_are_the_ones_drawn_here(world, monkeypatch, tmp_path):
    """On a GPU, write_report has the charts drawn in a second process (guppy/elsewhere.py); on a CPU, here. The
    same PNGs byte for byte, and with a second process this one draws nothing."""
    import guppy.eval.report as charts  # where write_report's charts find new_figure
    from guppy.elsewhere import MATPLOTLIB, Elsewhere
    from guppy.eval.report import write_report
    from guppy.store.paths import RunPaths

    report = json.loads((world / "runs/mini/eval/report.json").read_text()) if (world / "runs/mini/eval").exists() \
        else evaluate(persona="mini", samples=2)
    here, there = RunPaths(tmp_path / "here"), RunPaths(tmp_path / "there")
    write_report(here, report)

    def not_here(*args, **kwargs):
        raise AssertionError("drawn in this process")

    monkeypatch.setattr(charts, "new_figure", not_here)
    with Elsewhere(warm=MATPLOTLIB) as elsewhere:
        write_report(there, report, elsewhere)
    for name in ("associations.png", "turns.png", "report.md", "report.json"):
        assert (there.eval / name).read_bytes() == (here.eval / name).read_bytes(), name
    with pytest.raises(AssertionError, match="drawn in this process"):
        write_report(RunPaths(tmp_path / "again"), report)
    assert not (tmp_path / "again" / "eval").exists()  # nothing half-written

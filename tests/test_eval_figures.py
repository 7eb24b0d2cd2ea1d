"""The evaluator's figures on hand-made replies (and one tiny untrained model): each would read wrong if its arithmetic broke."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from guppy.eval.confidence import mean_ci, normalized, on_topic_ci, over_seeds, persona_score_ci
from guppy.eval.novelty import novelty_figures, sentences, training_sentences
from guppy.eval.on_topic import fit_classifier, held_out_prompts, on_topic_figures, shuffled_floor, topic_mean
from guppy.eval.turns import drift

TRAIN = {"food": ["i love flakes. food is the best.", "pellets please. i am hungry.", "flakes now. i want food."] * 3,
         "water": ["the water is warm today.", "i swim in clear water.", "bubbles in the water. nice."] * 3}


def test_sentences_split_in_english_and_in_japanese():
    assert sentences("i love flakes. food is the best!  ok?") == ["i love flakes.", "food is the best!", "ok?"]
    assert sentences("ごはんだ。おなかすいた！ほんと？") == ["ごはんだ。", "おなかすいた!", "ほんと?"]  # NFKC folds ！？
    assert sentences("ＯＫ。") == ["OK。"]  # folded like prompts are


def test_novelty_counts_whole_copies_sentences_and_stitching():
    train = {"i love flakes. food is the best.", "the water is warm."}
    known = training_sentences(train)
    f = novelty_figures(["i love flakes. food is the best.",   # a whole copy
                         "the water is warm. i love flakes.",  # stitched from train sentences
                         "i love flakes. snails are slow.",     # half known
                         "something new entirely."], train, known)
    assert f["copied"] == 0.25 and f["novel"] == 0.75
    assert f["stitched"] == 0.5
    assert f["sentences"] == pytest.approx(5 / 7)  # 5 of the 7 reply sentences are train sentences


def test_the_shuffled_floor_is_the_mean_over_every_shuffle():
    asked = ["a", "a", "b", "c", "c"]
    read_as = ["a", "b", "b", "c", "a"]
    every = [topic_mean(asked, [x == y for x, y in zip(asked, perm)]) for perm in itertools.permutations(read_as)]
    assert shuffled_floor(asked, read_as) == pytest.approx(np.mean(every))


def test_normalized_is_the_share_of_the_way_from_floor_to_ceiling():
    assert normalized(0.6, 0.2, 1.0) == pytest.approx(0.5)
    assert normalized(0.1, 0.2, 1.0) == 0.0 and normalized(1.2, 0.2, 1.0) == 1.0
    assert normalized(0.5, 0.5, 0.5) == 0.0  # no room above the floor: nothing learned can show
    np.testing.assert_allclose(normalized(np.array([0.2, 0.6]), 0.2, 1.0), [0.0, 0.5])


def test_intervals_hold_the_figure_and_narrow_with_more_prompts():
    rng = np.random.default_rng(0)
    few, many = rng.random(20) < 0.7, rng.random(2000) < 0.7
    lo_few, hi_few = mean_ci(few, seed=0)
    lo_many, hi_many = mean_ci(many, seed=0)
    assert lo_few <= few.mean() <= hi_few and lo_many <= many.mean() <= hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 3
    assert mean_ci(few, seed=0) == mean_ci(few, seed=0)  # seeded: the same report twice
    score = persona_score_ci({"x": [1.0] * 30 + [0.0] * 10}, {"x": [0.0] * 40}, {"x": 1.0}, seed=0)
    assert score[0] < 0.75 < score[1]


def test_on_topic_weighs_topics_equally_and_its_interval_falls_to_zero_for_replies_that_ignore_the_question():
    lopsided = ["a"] * 24 + ["b"] * 2  # a test split with few prompts of one topic
    assert shuffled_floor(lopsided, ["a"] * 26) == 0.5 and topic_mean(lopsided, [True] * 24 + [False] * 2) == 0.5
    asked = ["a", "b"] * 50
    answering = on_topic_ci(asked, asked, ceiling=1.0, seed=0)
    ignoring = on_topic_ci(asked, ["a"] * 100, ceiling=1.0, seed=0)
    assert answering[0] > 0.9 and ignoring[1] < 0.15


def test_the_classifier_reads_topics_and_the_table_puts_the_worst_first():
    clf = fit_classifier(TRAIN, "en")
    assert clf.predict(["i want flakes. food!", "the water is clear."]) == ["food", "water"]
    asked = ["food", "food", "water", "water"]
    replies = ["flakes please. food.", "the water is warm.", "i swim in the water.", "water bubbles."]
    f = on_topic_figures(clf, asked, replies, ["q1", "q2", "q3", "q4"], asked, replies)
    assert f["model"] == 0.75 and f["per_topic"][0]["topic"] == "food" and f["per_topic"][0]["read_as"] == "water"
    assert f["per_topic"][0]["example"]["prompt"] == "q2"  # the example of a topic is a miss where there is one
    assert fit_classifier({"only": ["one topic"]}, "en") is None


def test_the_classifier_is_fitted_once_per_replies_and_seed_then_read_from_the_cache(monkeypatch):
    import guppy.eval.on_topic as on_topic

    fits = []
    monkeypatch.setattr(on_topic, "fit_classifier", lambda *args: fits.append(args) or fit_classifier(*args))
    first = on_topic.cached_classifier(TRAIN, "en", 0)
    again = on_topic.cached_classifier(TRAIN, "en", 0)
    assert len(fits) == 1 and again.topics == first.topics
    replies = ["i want flakes. food!", "the water is clear.", "bubbles in the water"]
    assert again.predict(replies) == first.predict(replies)
    on_topic.cached_classifier(TRAIN, "en", 1)  # another seed shuffles other replies in: another fit
    on_topic.cached_classifier({**TRAIN, "food": TRAIN["food"][:-1]}, "en", 0)  # other replies: another fit
    assert len(fits) == 3


def test_replies_asked_about_ahead_in_the_second_process_are_read_as_when_asked_then():
    """measure() has the ceiling's test replies read while the model samples (ClassifierElsewhere.ask_ahead)."""
    from guppy.elsewhere import SKLEARN, Elsewhere
    from guppy.eval.on_topic import ClassifierElsewhere, cached_classifier

    replies = ["i want flakes. food!", "the water is clear.", "bubbles in the water", "pellets please"]
    with Elsewhere(warm=SKLEARN) as elsewhere:
        there = ClassifierElsewhere(elsewhere, TRAIN, "en", 0)
        there.ask_ahead(replies)
        assert tuple(replies) in there.asked
        assert there.predict(replies) == cached_classifier(TRAIN, "en", 0).predict(replies)
        assert not there.asked  # collected, not asked again
        assert there.predict(replies[:2]) == ["food", "water"]


def test_held_out_prompts_cover_every_topic_with_enough_prompts():
    test = {t: [[{"role": "user", "content": f"{t} {i}"}, {"role": "assistant", "content": "x"}] for i in range(40)]
            for t in ("a", "b", "c")}
    pairs = held_out_prompts(test, seed=0)
    assert {t for t, _ in pairs} == {"a", "b", "c"} and len(pairs) == 60
    assert held_out_prompts(test, seed=0) == pairs and held_out_prompts(test, seed=1) != pairs


def test_drift_and_seed_summaries():
    assert drift([{"x": 0.8}, {"x": 0.4}], "x") == 0.5 and drift([{"x": 0.0}, {"x": 0.4}], "x") is None
    reports = [{"seed": s, "p": v} for s, v in ((0, 0.8), (1, 0.9), (2, 0.7))]
    spread = over_seeds(reports, {"p": lambda r: r["p"]})
    assert spread["p"] == {"median": 0.8, "min": 0.7, "max": 0.9, "values": [0.8, 0.9, 0.7]}
    assert spread["seeds"] == [0, 1, 2]


def test_next_token_log_probs_are_log_probs_picked_at_each_next_token():
    """The lift's words of several tokens read only each row's own next tokens (picked where the model runs);
    they must be exactly what the whole rows of log_probs hold there, padding or not."""
    import torch

    from guppy.eval.likelihood import log_probs, next_token_log_probs
    from guppy.model.gpt import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, d_model=16, d_ff=32, context=16, vocab_size=30)).eval()
    rows = [[1, 5, 7, 2], [3, 4], [9, 8, 7, 6, 5, 4, 3], [2, 2, 2]]
    whole = log_probs(model, rows, pad=0, batch_size=3)
    picked = next_token_log_probs(model, rows, pad=0, batch_size=3)
    for row, lp, mine in zip(rows, whole, picked):
        assert mine.shape == (len(row) - 1,)
        assert torch.equal(mine, lp[torch.arange(len(row) - 1), torch.tensor(row[1:])])

"""On topic: does a reply answer what was asked?

A topic classifier is fit on the train split's replies (the label is the topic that wrote them) and
then reads every reply the model gives to a held-out prompt: the reply is on topic when the
classifier says it belongs to the prompt's topic. It is scikit-learn's character n-gram TF-IDF and a
multinomial naive Bayes, so it needs no word boundaries and works the same in Japanese as in English.
Naive Bayes fits guppy's 65 topics in half a second; a logistic regression read 2% more of the test
replies right (0.94 against 0.92) but took 40-80x as long to fit, longer than the rest of `guppy eval`.

Three figures, as for every figure of the evaluator (guppy/eval/evaluate.py), each the mean over topics
of a topic's share (so a topic with many held-out prompts does not outweigh one with few):
    ceiling  the test split's own replies through the same classifier: what the data itself reaches
             (topics that share phrasing, such as "happy" and "excited", cap it below 1)
    model    the model's replies to the held-out prompts: per topic, the share read as that topic
    floor    the same replies shuffled across the prompts: a model that ignores the question and
             answers from its usual mix. Computed exactly, as the mean over every shuffle: a reply
             to a prompt of topic t is then read as t with P(any of its replies is read as t)
and `score`, the share of the way from floor to ceiling (clipped to [0, 1]), like the persona score.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guppy.eval.confidence import normalized
from guppy.spec.language import is_spaced

TRAIN_REPLIES_PER_TOPIC = 150  # distinct replies per topic: enough for a stable classifier, quick to fit
HELD_OUT_PROMPTS_PER_TOPIC = (6, 24)  # at least 6 of each topic, more where there are few topics (60 in all)


@dataclass
class TopicClassifier:
    pipeline: object  # sklearn Pipeline(TfidfVectorizer, MultinomialNB)
    topics: list[str]

    def predict(self, replies: list[str]) -> list[str]:
        if not replies:
            return []
        return [self.topics[i] for i in self.pipeline.predict(replies)]


def fit_classifier(train_by_topic: dict[str, list[str]], language: str, seed: int = 0) -> TopicClassifier | None:
    """Fit on up to TRAIN_REPLIES_PER_TOPIC replies of each topic; None when there are fewer than two topics."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    topics = sorted(t for t, replies in train_by_topic.items() if replies)
    if len(topics) < 2:
        return None
    texts, labels = [], []
    rng = random.Random(seed)
    for i, topic in enumerate(topics):
        replies = sorted(set(train_by_topic[topic]))
        rng.shuffle(replies)
        texts += replies[:TRAIN_REPLIES_PER_TOPIC]
        labels += [i] * len(replies[:TRAIN_REPLIES_PER_TOPIC])
    # Spaced languages: n-grams inside words (and across their edges); unspaced: any run of characters.
    analyzer, ngrams = ("char_wb", (2, 5)) if is_spaced(language) else ("char", (1, 3))
    pipeline = make_pipeline(TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=2),
                             MultinomialNB(alpha=0.01))
    pipeline.fit(texts, labels)
    return TopicClassifier(pipeline, topics)


CLASSIFIER_KIND, CLASSIFIER_FILE = "topic-classifier", "classifier.pickle"


def cached_classifier(train_by_topic: dict[str, list[str]], language: str, seed: int) -> TopicClassifier | None:
    """fit_classifier's classifier, fitted once per dataset and seed (guppy/store/dataset_cache.py): the fit was
    ~2 s of a GPU `guppy eval`. The key covers the replies, the language, the seed, this code and scikit-learn's
    version; a pickle written by this code into the user's own cache is what is read back."""
    import hashlib
    import json
    import pickle

    import sklearn

    from guppy.store.dataset_cache import cached_file

    h = hashlib.blake2b(json.dumps([sorted(train_by_topic.items()), language, seed, sklearn.__version__]).encode(),
                        digest_size=16)
    h.update(Path(__file__).read_bytes())
    return cached_file(CLASSIFIER_KIND, h.hexdigest(), CLASSIFIER_FILE,
                       lambda: fit_classifier(train_by_topic, language, seed), dump=pickle.dumps, load=pickle.loads,
                       keep=8, unreadable=(Exception,))  # a pickle that cannot be read, however: fit again


class ClassifierElsewhere:
    """The topic classifier, fitted and asked in a second process (guppy/elsewhere.py) while the model samples on a
    GPU: sklearn's import and the fit overlap the sampling instead of coming before it. `predict` waits for the fit."""

    def __init__(self, elsewhere, train_by_topic: dict[str, list[str]], language: str, seed: int):
        self.elsewhere = elsewhere
        self.fitted = elsewhere.submit(_fit_there, train_by_topic, language, seed)
        self.asked: dict[tuple[str, ...], object] = {}  # replies asked about ahead -> the Future of their topics

    def ask_ahead(self, replies: list[str]) -> None:
        """Have `replies` read now, while the model samples; `predict` of the same replies then only collects."""
        self.asked[tuple(replies)] = self.elsewhere.submit(_predict_there, replies)

    def predict(self, replies: list[str]) -> list[str]:
        self.fitted.result()  # the fit's own error, if it failed, rather than a predict without a classifier
        if tuple(replies) in self.asked:
            return self.asked.pop(tuple(replies)).result()
        return self.elsewhere.submit(_predict_there, replies).result() if replies else []


_THERE: list[TopicClassifier] = []  # in the second process: the classifier it fitted


def _fit_there(train_by_topic: dict[str, list[str]], language: str, seed: int) -> None:
    _THERE.append(cached_classifier(train_by_topic, language, seed))


def _predict_there(replies: list[str]) -> list[str]:
    return _THERE[-1].predict(replies)


def topic_classifier(train_by_topic: dict[str, list[str]], language: str, seed: int, *, elsewhere=None
                     ) -> TopicClassifier | ClassifierElsewhere | None:
    """The topic classifier, fitted here or in `elsewhere` (an Elsewhere process); None under two topics."""
    if sum(1 for replies in train_by_topic.values() if replies) < 2:
        return None
    if elsewhere is not None:
        return ClassifierElsewhere(elsewhere, train_by_topic, language, seed)
    return cached_classifier(train_by_topic, language, seed)


def held_out_prompts(test_by_topic: dict[str, list[list[dict]]], seed: int) -> list[tuple[str, str]]:
    """(topic, prompt) pairs: distinct held-out first messages of every topic, as many of each (see
    HELD_OUT_PROMPTS_PER_TOPIC) as the split has."""
    least, most = HELD_OUT_PROMPTS_PER_TOPIC
    per_topic = min(most, max(least, -(-60 // max(1, len(test_by_topic)))))
    rng = random.Random(seed)
    pairs = []
    for topic in sorted(test_by_topic):
        prompts = sorted({c[0]["content"] for c in test_by_topic[topic]})
        rng.shuffle(prompts)
        pairs += [(topic, p) for p in prompts[:per_topic]]
    return pairs


def topic_mean(asked: list[str], right: list[bool]) -> float:
    """The mean over the asked topics of each topic's share of right answers."""
    shares = [np.mean([r for a, r in zip(asked, right) if a == t]) for t in sorted(set(asked))]
    return float(np.mean(shares)) if shares else 0.0


def shuffled_floor(asked: list[str], read_as: list[str]) -> float:
    """Expected on-topic figure if the replies were handed to the prompts in a random order: a reply
    to topic t is then any reply, read as t with the share of all replies read as t."""
    if not asked:
        return 0.0
    read = Counter(read_as)
    return float(np.mean([read[t] / len(read_as) for t in sorted(set(asked))]))


def on_topic_figures(classifier: TopicClassifier, asked: list[str], replies: list[str], prompts: list[str],
                     ceiling_asked: list[str], ceiling_replies: list[str]) -> dict:
    """Model / floor / ceiling / score, per topic (worst first, one example each), and what the bootstrap needs."""
    read_as = classifier.predict(replies)
    ceiling_read = classifier.predict(ceiling_replies)
    ceiling_hits = [a == r for a, r in zip(ceiling_asked, ceiling_read)]
    model = topic_mean(asked, [a == r for a, r in zip(asked, read_as)])
    floor, ceiling = shuffled_floor(asked, read_as), topic_mean(ceiling_asked, ceiling_hits)
    return {
        "model": model, "floor": floor, "ceiling": ceiling, "score": normalized(model, floor, ceiling),
        "per_topic": per_topic_table(asked, read_as, prompts, replies, ceiling_asked, ceiling_hits),
        "_asked": asked, "_read_as": read_as,  # for the bootstrap (guppy/eval/confidence.py); not written
    }


def per_topic_table(asked, read_as, prompts, replies, ceiling_asked, ceiling_hits) -> list[dict]:
    rows = []
    for topic in sorted(set(asked)):
        idx = [i for i, a in enumerate(asked) if a == topic]
        right = [i for i in idx if read_as[i] == topic]
        wrong = [i for i in idx if read_as[i] != topic]
        data = [h for a, h in zip(ceiling_asked, ceiling_hits) if a == topic]
        example = (wrong or right)[0]
        rows.append({
            "topic": topic, "n": len(idx), "model": round(len(right) / len(idx), 4),
            "ceiling": round(float(np.mean(data)), 4) if data else None,
            "read_as": Counter(read_as[i] for i in wrong).most_common(1)[0][0] if wrong else topic,
            "example": {"prompt": prompts[example], "reply": replies[example], "read_as": read_as[example]},
        })
    return sorted(rows, key=lambda r: (r["model"] - (r["ceiling"] or 0), r["topic"]))

"""The data pipeline: reproducible, leak-free, deduplicated, readable by other tools."""

from __future__ import annotations

import hashlib
import json

import copy

import datasets
import pytest

from pipeline.generate import generate_data, plan_counts
from guppy.spec.personas import load_persona
from pipeline.render import Renderer
from pipeline.workers import render_each
from guppy.data.split import PromptKeys, leak_free_split, normalize_prompt
from tests.conftest import MINI_PERSONA, write_persona


def rows_hash(dd: datasets.DatasetDict) -> str:
    h = hashlib.sha256()
    for split in ("train", "test"):
        for row in dd[split]:
            h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()


def test_plan_counts_sum_to_n_and_follow_weights():
    counts = plan_counts({"a": 2.0, "b": 1.0, "c": 1.0}, 1001)
    assert sum(counts.values()) == 1001
    assert counts["a"] in (500, 501) and abs(counts["b"] - 250) <= 1


def test_split_never_shares_a_normalized_prompt():
    prompts = [f"Hello {i % 40}!" for i in range(2000)] + [f"hello {i % 40}" for i in range(500)]
    is_test = leak_free_split(prompts, test_size=0.1, seed=3)
    train = {normalize_prompt(p) for p, t in zip(prompts, is_test) if not t}
    test = {normalize_prompt(p) for p, t in zip(prompts, is_test) if t}
    assert test and not train & test
    assert 0.05 < sum(is_test) / len(prompts) < 0.15


def test_prompt_keys_remember_normalize_prompt():
    prompts = ["Hello, Fish!", "hello fish", "HELLO   fish?!", "are you hungry"] * 50
    keys = PromptKeys()
    assert [keys[p] for p in prompts] == [normalize_prompt(p) for p in prompts] and len(keys) == 4
    assert (leak_free_split(prompts, test_size=0.3, seed=1, normalize=keys.__getitem__)
            == leak_free_split(prompts, test_size=0.3, seed=1))


# Every feature of a template at once: slots, pick from a list and from "a|b", pick_n, maybe,
# randint, lexicon and persona fields, a turn spread over lines, spaces before punctuation.
STABLE = """{% set f = pick(lexicon.foods) %}
user: {{ pick(["hi", "hello", "hey"]) }} {{ persona.name }} , want {{ f }} ?
assistant: {{ pick("yes|no|maybe") }} ! {{ pick_n(lexicon.moods, 2)|join(" and ") }} .
  {% if maybe(0.5) %}I Like {{ f }} ;{% endif %} {{ randint(1, 9) }}
user: more ?
assistant: {{ pick(lexicon.foods) }}   .
"""


def test_rendering_is_the_same_as_ever(tmp_path):
    """Same seed, same conversations, across versions too: the renderer may get faster, but it
    must draw from the RNG and fold whitespace exactly as it always has."""
    spec = copy.deepcopy(MINI_PERSONA)
    spec["topics"]["mood"]["template"] = "mini/stable.jinja"
    path = write_persona(tmp_path, spec, {"mini/food.jinja": "user: a\nassistant: b", "mini/stable.jinja": STABLE})
    renderer = Renderer(load_persona(path), seed=7)
    assert renderer.render("mood", 0) == (("user", "hi mini, want daphnia?"), ("assistant", "no! bouncy and wiggly. 7"),
                                          ("user", "more?"), ("assistant", "bloodworms."))
    assert renderer.render("mood", 6) == (("user", "hey mini, want brine shrimp?"),
                                          ("assistant", "yes! sleepy and happy. i like brine shrimp; 3"),
                                          ("user", "more?"), ("assistant", "flakes."))
    convs = repr([renderer.render("mood", i) for i in range(300)]).encode()
    assert hashlib.sha256(convs).hexdigest() == "57322e8c227c35f079804f7042a74e93ae23d0aaaad4ab8a6bab895b57e409b3"


def test_dataset_rows_are_the_same_as_ever(mini, tmp_path):
    """Ids, order, split and columns of a seeded dataset, pinned (made by the first release)."""
    generate_data(persona=mini, n=300, seed=0, out=tmp_path / "d", num_proc=2)
    assert rows_hash(datasets.load_from_disk(str(tmp_path / "d"))) == (
        "c3eaeba0dbc15a36eea61a3ad1a1acb2517fd256470bb63eb17c506f1aa746cc")


def test_dataset_has_contract_columns_and_no_leak_or_duplicates(mini, tmp_path):
    report = generate_data(persona=mini, n=600, out=tmp_path / "data")
    dd = datasets.load_from_disk(str(tmp_path / "data"))
    assert set(dd) == {"train", "test"}
    assert set(dd["train"].column_names) == {"messages", "topic", "persona", "template", "id"}
    assert dd["train"].features["topic"].names == ["food", "mood"]
    assert len(dd["train"]) + len(dd["test"]) == report.rows == 600
    convs = [json.dumps(r["messages"]) for s in ("train", "test") for r in dd[s]]
    assert len(set(convs)) == len(convs)
    prompts = {s: {normalize_prompt(r["messages"][0]["content"]) for r in dd[s]} for s in dd}
    assert not prompts["train"] & prompts["test"]
    assert (tmp_path / "data" / "README.md").read_text().startswith("---\npretty_name:")
    assert (tmp_path / "data" / "persona.yaml").read_text() == mini.read_text()


def test_same_seed_same_bytes_other_seed_other_rows(mini, tmp_path):
    for name, seed, procs in (("a", 1, 1), ("b", 1, 2), ("c", 2, 1)):
        generate_data(persona=mini, n=400, seed=seed, out=tmp_path / name, num_proc=procs)
    a, b, c = (rows_hash(datasets.load_from_disk(str(tmp_path / x))) for x in "abc")
    assert a == b  # one process or two: the same rows, byte for byte
    assert a != c


def test_validates_sample_is_the_same_in_one_process_or_two(mini):
    """`guppy persona validate` renders in processes (pipeline/workers.py): the same conversations, in order."""
    loaded = load_persona(mini)
    counts = {t: 40 for t in loaded.spec.topics}
    one, two = (render_each(Renderer(loaded, seed=0), counts, procs) for procs in (1, 2))
    assert one == two and [len(c) for c in one.values()] == list(counts.values())
    assert one[next(iter(counts))][0] == Renderer(loaded, seed=0).render(next(iter(counts)), 0)


def test_probe_prompts_never_reach_training_data(mini, tmp_path):
    text = mini.read_text().replace("what do you dream of eating", "are you hungry now")
    mini.write_text(text)
    report = generate_data(persona=mini, n=400, out=tmp_path / "d")
    dd = datasets.load_from_disk(str(tmp_path / "d"))
    assert report.probes_dropped > 0
    assert all(normalize_prompt(r["messages"][0]["content"]) != "are you hungry now" for s in dd for r in dd[s])


def test_association_share_in_data_is_measured(mini, tmp_path):
    report = generate_data(persona=mini, n=300, out=tmp_path / "d")
    # every food reply names a food from the pool; 'flakes'/'pellets'/'food' appear in a known share
    assert 0.3 < report.association_share["food"] <= 1.0


def test_short_templates_are_reported_not_padded(mini, tmp_path):
    report = generate_data(persona=mini, n=20_000, out=tmp_path / "d")
    assert report.short_topics and report.rows < 20_000


@pytest.mark.parametrize("fmt,builder,pattern", [("jsonl", "json", "*.jsonl"), ("parquet", "parquet", "*.parquet")])
def test_exports_load_with_load_dataset(mini, tmp_path, fmt, builder, pattern):
    generate_data(persona=mini, n=300, out=tmp_path / "d", fmt=fmt)
    files = sorted((tmp_path / "d" / "data").glob(pattern))
    data_files = {f.name.split("-")[0].split(".")[0]: str(f) for f in files}
    dd = datasets.load_dataset(builder, data_files=data_files)
    assert set(dd) == {"train", "test"} and len(dd["train"]) + len(dd["test"]) == 300
    assert dd["train"][0]["messages"][-1]["role"] == "assistant"


def test_a_tiny_corpus_still_gets_a_readable_test_split(mini, tmp_path):
    generate_data(persona=mini, n=2, out=tmp_path / "d")  # 5% of 2 rows rounds to none
    dd = datasets.load_from_disk(str(tmp_path / "d"))
    assert (len(dd["train"]), len(dd["test"])) == (1, 1)


def test_one_prompt_cannot_be_split_leak_free(tmp_path):
    from guppy.errors import GuppyError

    one = {"mini/food.jinja": "user: hi\nassistant: {{ pick(lexicon.foods) }} {{ randint(1, 999) }}.\n",
           "mini/mood.jinja": "user: hi\nassistant: i feel {{ pick(lexicon.moods) }} {{ randint(1, 999) }}.\n"}
    with pytest.raises(GuppyError, match="test split"):
        generate_data(persona=write_persona(tmp_path, templates=one), n=200, out=tmp_path / "d")
    assert not (tmp_path / "d").exists()

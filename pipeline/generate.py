"""persona + templates -> a Hugging Face DatasetDict on disk, in named stages.

    1. load      validate the persona and compile every template (errors before any work)
    2. plan      split --n between topics by weight (largest remainder)
    3. render    each sample from its own RNG (seed, persona, topic, index), in N processes
    4. dedup     drop exact duplicate conversations and any whose prompt is an eval probe;
                 render more samples of a topic that came up short (up to 4 rounds)
    5. measure   per topic, in the same processes: row ids, style and association counts;
                 a reply that breaks the persona's style fails the run (naming the template
                 lines behind the worst offenders), or with --drop-violations its conversation goes
    6. split     leak-free: a normalized user prompt is in train or in test, never both
    7. save      DatasetDict (+ JSONL/Parquet), dataset card and persona spec, atomically

Every stage reports counts in the returned `GenerateReport`. Same seed -> same bytes.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import random
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple

from guppy.checks import SEED_MAX, check_number
from guppy.config import GENERATE
from guppy.data.format import FORMATS, data_file, features
from guppy.errors import GuppyError
from guppy.spec.style import conversation_violations
from guppy.store.atomic import atomic_dir, check_output, output_lock
from guppy.store.paths import RunPaths
from pipeline.authoring import persona_warnings, style_problems
from pipeline.card import write_card
from guppy.spec.personas import LoadedPersona, load_persona
from pipeline.render import Conversation, Renderer
from pipeline.workers import chunk_jobs, render_chunk, renderer_here, worker_pool
from guppy.data.split import PromptKeys, leak_free_split

Format = Literal["arrow", "jsonl", "parquet"]
MAX_ROUNDS = 4  # render rounds per topic before giving up on reaching its count


@dataclass
class GenerateReport:
    persona: str
    out: Path
    requested: int
    rows: int = 0
    train: int = 0
    test: int = 0
    unique_prompts: int = 0
    unique_replies: int = 0
    rendered: int = 0
    duplicates_dropped: int = 0
    probes_dropped: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    short_topics: dict[str, int] = field(default_factory=dict)  # topic -> how many it lacks
    association_share: dict[str, float] = field(default_factory=dict)  # the evaluator's ceiling
    style_share: float = 0.0
    style_dropped: int = 0  # conversations dropped for breaking the style (--drop-violations)
    style_broken: dict[str, int] = field(default_factory=dict)  # rule -> replies that broke it, before any drop
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def plan_counts(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split n between topics in proportion to weight; remainders go to the largest fractions."""
    total = sum(weights.values())
    exact = {t: n * w / total for t, w in weights.items()}
    counts = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True)[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while the pipeline runs.

    The pipeline piles up hundreds of thousands of tuples, lists and strings that live until
    the end, and the collector would walk all of them again each time the pile grows
    (~8% of a run's time, ~20% of what the main process does with --num-proc 2). They form
    no cycles, so reference counting frees them anyway; whatever cycles the libraries make
    are collected once it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def render_unique(imap: Callable, persona: LoadedPersona, counts: dict[str, int], *, keys: PromptKeys,
                  on_progress: Callable[[int], None] = lambda k: None
                  ) -> tuple[dict[str, list[Conversation]], dict[str, list[int]], Counter]:
    """Render until every topic has `counts[topic]` unique conversations (or rounds run out).
    Returns them, the sample index each was rendered from, and the counts."""
    probes = {keys[p] for p in persona.spec.probes()}
    kept: dict[str, list[Conversation]] = {t: [] for t in counts}
    indices: dict[str, list[int]] = {t: [] for t in counts}
    seen: set[Conversation] = set()
    stats = Counter()
    next_index = dict.fromkeys(counts, 0)
    wanted = dict(counts)
    for _ in range(MAX_ROUNDS):
        jobs = [j for t, k in wanted.items() if k > 0 for j in chunk_jobs(t, next_index[t], k)]
        if not jobs:
            break
        for topic, start, convs in imap(render_chunk, jobs):
            stats["rendered"] += len(convs)
            for index, conv in enumerate(convs, start):
                if len(kept[topic]) >= counts[topic]:
                    continue
                if conv in seen:
                    stats["duplicates"] += 1
                elif keys[conv[0][1]] in probes:
                    stats["probes"] += 1
                else:
                    seen.add(conv)
                    kept[topic].append(conv)
                    indices[topic].append(index)
            on_progress(len(convs))
        for t in counts:
            next_index[t] += wanted[t]
            missing = counts[t] - len(kept[t])
            # Ask for more than is missing: the same share will be duplicates again.
            wanted[t] = 0 if missing == 0 else missing * 2 + 10
    return kept, indices, stats


# json.dumps with separators= builds a new encoder per call; one encoder gives the same bytes.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def row_id(conv: Conversation) -> str:
    """A stable id: a hash of the conversation's messages as compact JSON."""
    messages = [{"role": role, "content": content} for role, content in conv]
    return hashlib.blake2b(_compact_json(messages).encode(), digest_size=8).hexdigest()


@dataclass
class TopicFacts:
    """One topic's share of the per-row work after dedup, done in the worker processes:
    row ids, and the counts behind the style and association figures."""

    ids: list[str]
    replies: int  # assistant turns
    in_style: int  # of those, how many keep every style rule
    broken: list[int]  # positions (in the topic's list) of conversations with a reply out of style
    rules: Counter  # rule -> replies that break it
    hits: dict[str, int]  # association -> turns that show it, for the associations that cover this topic


def _topic_facts(job: tuple[str, list[Conversation]]) -> TopicFacts:
    topic, convs = job
    spec = renderer_here().persona.spec  # this process's copy of the persona
    replies = [turn[1] for c in convs for turn in c if turn[0] == "assistant"]
    rules, broken, out_of_style = Counter(), [], 0
    for position, conv in enumerate(convs):
        found = {(turn, v.rule) for turn, v in conversation_violations(conv, spec.style)}  # a rule once per turn
        if found:
            broken.append(position)
            out_of_style += len({turn for turn, _ in found if conv[turn][0] == "assistant"})
            rules.update(rule for _, rule in found)
    return TopicFacts(
        ids=[row_id(c) for c in convs],
        replies=len(replies),
        in_style=len(replies) - out_of_style,
        broken=broken,
        rules=rules,
        hits={name: sum(map(assoc.hit, replies)) for name, assoc in spec.associations.items()
              if not assoc.topics or topic in assoc.topics},
    )


def style_failure(loaded: LoadedPersona, broken: list[tuple[str, int]], rules: dict[str, int], *, seed: int,
                  rows: int) -> list[str]:
    """The error of a run whose data breaks the persona's style: the count, the worst places, what to do."""
    summary = ", ".join(f"{rule.replace('_', ' ')}: {k:,}" for rule, k in sorted(rules.items(), key=lambda kv: -kv[1]))
    head = (f"{loaded.path}: {len(broken):,} of {rows:,} conversations have a reply that breaks the persona's "
            f"style ({summary}); the worst places:")
    worst = style_problems(loaded, broken[:2000], seed=seed, of="in this data" if len(broken) <= 2000 else "in the first 2,000")
    return [head, *worst, "fix those lines or pools, or loosen `style:`; or pass --drop-violations to leave such "
                          "conversations out (the dataset card counts them)"]


def measure(persona: LoadedPersona, kept: dict[str, list[Conversation]], facts: dict[str, TopicFacts],
            report: GenerateReport, keys: PromptKeys) -> None:
    """Counts for the summary, and the association/style figures of the data itself (the ceiling)."""
    report.rows = sum(map(len, kept.values()))
    report.unique_prompts = len({keys[c[0][1]] for cs in kept.values() for c in cs})
    report.unique_replies = len({turn[1] for cs in kept.values() for c in cs for turn in c if turn[0] == "assistant"})
    report.per_topic = {t: len(cs) for t, cs in kept.items()}
    report.style_share = sum(f.in_style for f in facts.values()) / max(1, sum(f.replies for f in facts.values()))
    for name, assoc in persona.spec.associations.items():
        its = [facts[t] for t in assoc.topics or kept]
        report.association_share[name] = sum(f.hits[name] for f in its) / max(1, sum(f.replies for f in its))


class Row(NamedTuple):
    topic: str
    conv: Conversation
    id: str


def shuffled_rows(kept: dict[str, list[Conversation]], facts: dict[str, TopicFacts], seed: int) -> list[Row]:
    rows = [Row(topic, conv, id_) for topic, convs in kept.items() for conv, id_ in zip(convs, facts[topic].ids)]
    random.Random(seed).shuffle(rows)  # interleave topics; the order is part of the bytes, so seeded
    return rows


def arrow_table(persona: LoadedPersona, rows: list[Row], schema):
    """The rows as an Arrow table, built a column at a time.

    The same table from a dict per row and per message (`pa.Table.from_pylist`) takes twice
    as long, and `datasets.Dataset.from_dict`, which infers types and casts, 7x. `messages`
    is a list of structs: every turn of every row in two flat string columns, plus offsets
    saying where each row's turns start.
    """
    import pyarrow as pa

    spec = persona.spec
    topic_ids = {t: i for i, t in enumerate(spec.topics)}
    templates = {t: topic.template for t, topic in spec.topics.items()}
    turns = [turn for row in rows for turn in row.conv]
    message = pa.StructArray.from_arrays([pa.array([role for role, _ in turns], pa.string()),
                                          pa.array([content for _, content in turns], pa.string())],
                                         names=["role", "content"])
    offsets = pa.array(list(itertools.accumulate((len(row.conv) for row in rows), initial=0)), pa.int32())
    columns = {
        "messages": pa.ListArray.from_arrays(offsets, message, type=schema.field("messages").type),
        "topic": [topic_ids[row.topic] for row in rows],
        "persona": [spec.name] * len(rows),
        "template": [templates[row.topic] for row in rows],
        "id": [row.id for row in rows],
    }
    return pa.Table.from_arrays([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def build_dataset(persona: LoadedPersona, rows: list[Row], is_test: list[bool]):
    from datasets import Dataset, DatasetDict, DatasetInfo

    columns = features(list(persona.spec.topics))

    def split(want_test: bool) -> Dataset:
        chosen = [r for r, t in zip(rows, is_test) if t == want_test]
        return Dataset(arrow_table(persona, chosen, columns.arrow_schema), info=DatasetInfo(features=columns))

    return DatasetDict(train=split(False), test=split(True))


def save(dataset, persona: LoadedPersona, report: GenerateReport, *, seed: int, test_size: float,
         fmt: Format, overwrite: bool) -> None:
    with atomic_dir(report.out, kind="dataset", overwrite=overwrite) as tmp:
        if fmt == "arrow":
            dataset.save_to_disk(str(tmp))
        else:
            (tmp / "data").mkdir()
            for split, ds in dataset.items():
                path = str(tmp / data_file(split, fmt))
                if fmt == "jsonl":
                    ds.to_json(path, lines=True)
                else:
                    ds.to_parquet(path)
        (tmp / "persona.yaml").write_text(persona.source, encoding="utf-8")
        write_card(tmp / "README.md", dataset, persona, report, seed=seed, test_size=test_size, fmt=fmt)


def generate_data(*, persona: str | Path, n: int = GENERATE.n, seed: int = 0, out: Path | None = None,
                  test_size: float = GENERATE.test_size, num_proc: int = 1, fmt: Format = GENERATE.format,
                  overwrite: bool = False,
                  drop_violations: bool = False, on_progress: Callable[[int], None] = lambda k: None,
                  on_total: Callable[[int], None] = lambda k: None) -> GenerateReport:
    started = time.perf_counter()
    loaded = load_persona(persona)  # 1. load (the Renderer below compiles the templates)
    spec = loaded.spec
    out = Path(out) if out is not None else RunPaths.for_persona(spec.name).data
    check_generate_options(n=n, seed=seed, test_size=test_size, num_proc=num_proc, fmt=fmt)
    if n < len(spec.topics):
        raise GuppyError(f"--n {n} is smaller than the number of topics ({len(spec.topics)}) in {loaded.path}")
    check_output(out, "dataset", overwrite=overwrite)  # before any work: is it ours to replace?
    with output_lock(out):  # a second generate-data on the same --out is refused, not silently lost
        return _generate(loaded, n=n, seed=seed, out=out, test_size=test_size, num_proc=num_proc, fmt=fmt,
                         overwrite=overwrite, drop_violations=drop_violations, on_progress=on_progress,
                         on_total=on_total, started=started)


MAX_N = 10_000_000  # ~2 GB of conversations in memory; more is a typo, or a job for several runs


def check_generate_options(*, n: int, seed: int, test_size: float, num_proc: int, fmt: str) -> None:
    """Every number generate-data takes, checked before any work (one line each)."""
    check_number("--n", n, ge=1, le=MAX_N)
    check_number("--seed", seed, ge=0, le=SEED_MAX)
    check_number("--test-size", test_size, gt=0, lt=1)
    check_number("--num-proc", num_proc, ge=1, le=max(4, 4 * (os.cpu_count() or 1)))
    if fmt not in FORMATS:
        raise GuppyError(f"--format {fmt!r}: choose arrow, jsonl or parquet")


def _generate(loaded: LoadedPersona, *, n: int, seed: int, out: Path, test_size: float, num_proc: int, fmt: Format,
              overwrite: bool, drop_violations: bool, on_progress: Callable[[int], None],
              on_total: Callable[[int], None], started: float) -> GenerateReport:
    spec = loaded.spec
    report = GenerateReport(persona=spec.name, out=out, requested=n, warnings=persona_warnings(loaded))

    with cycle_collector_paused():
        counts = plan_counts({t: topic.weight for t, topic in spec.topics.items()}, n)  # 2. plan
        on_total(n)
        keys = PromptKeys()  # each distinct prompt normalized once, for probes, counts and split
        with worker_pool(Renderer(loaded, seed), num_proc) as imap:
            kept, indices, stats = render_unique(imap, loaded, counts, keys=keys, on_progress=on_progress)  # 3-4. render, dedup
            facts = dict(zip(kept, imap(_topic_facts, kept.items())))  # 5. measure
            report.style_broken = dict(sum((f.rules for f in facts.values()), Counter()))
            broken = [(t, indices[t][i]) for t, f in facts.items() for i in f.broken]
            if broken and not drop_violations:
                raise GuppyError(*style_failure(loaded, broken, report.style_broken, seed=seed,
                                                rows=sum(map(len, kept.values()))))
            if broken:  # --drop-violations: leave them out, and measure what is left
                for t, f in facts.items():
                    drop = set(f.broken)
                    kept[t] = [c for i, c in enumerate(kept[t]) if i not in drop]
                report.style_dropped = len(broken)
                facts = dict(zip(kept, imap(_topic_facts, kept.items())))
        report.rendered, report.duplicates_dropped, report.probes_dropped = (
            stats["rendered"], stats["duplicates"], stats["probes"])
        report.short_topics = {t: counts[t] - len(kept[t]) for t in counts if len(kept[t]) < counts[t]}
        measure(loaded, kept, facts, report, keys)

        rows = shuffled_rows(kept, facts, seed)  # 6. split
        is_test = leak_free_split([row.conv[0][1] for row in rows], test_size=test_size, seed=seed,
                                  normalize=keys.__getitem__)
        if all(is_test) or not any(is_test):
            raise GuppyError(f"--n {n}: too few distinct prompts to hold out a test split that shares none "
                             "with train; generate more conversations")
        dataset = build_dataset(loaded, rows, is_test)
        report.train, report.test = len(dataset["train"]), len(dataset["test"])
        save(dataset, loaded, report, seed=seed, test_size=test_size, fmt=fmt, overwrite=overwrite)  # 7. save
    report.seconds = time.perf_counter() - started
    return report

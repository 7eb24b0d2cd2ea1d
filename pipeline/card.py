"""The dataset card: README.md with the Hub's YAML header, written beside the data.

`save_to_disk` writes no card, so this writes one that says what the data is, how it
was made, and what makes it reproducible (seed, spec hash, template hashes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from guppy.data.format import card_features, data_files, split_sizes
from guppy.spec.language import language_and_script
from guppy.spec.personas import LoadedPersona


def size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "1M<n<10M"


def sentence(text: str) -> str:
    """A sentence for the card's prose: stripped, ending in . ! or ? (a description may have none)."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", "。", "！", "？")) else text + "."


def who(spec) -> str:
    """The card's line about the character. The card's frame is English: in an English persona the
    user's description reads on in the sentence; in any other language its text stays apart from
    the frame (no `…和爬树。. The user is 每天…`)."""
    if language_and_script(spec.language)[0] == "en":
        return f"{sentence(spec.identity.description)} {sentence('The user is ' + spec.identity.user)}"
    return f"- the character: {spec.identity.description.strip()}\n- the user: {spec.identity.user.strip()}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def template_hashes(persona: LoadedPersona) -> dict[str, str]:
    """sha256 of each template file used, the version that rendered this data."""
    hashes = {}
    for topic in persona.spec.topics.values():
        path = persona.find_template(topic.template)
        if path is not None:
            hashes[topic.template] = _sha(path.read_bytes())
    return hashes


def write_card(path: Path, dataset, persona: LoadedPersona, report, *, seed: int, test_size: float, fmt: str) -> None:
    spec = persona.spec
    header = {
        "pretty_name": f"Guppy persona conversations: {spec.name}",
        "license": "mit",
        "language": [spec.language],  # the persona's BCP 47 tag, as the Hub's header takes it
        "tags": ["synthetic", "persona", "conversational", "guppy"],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "size_categories": [size_category(report.rows)],
        "task_categories": ["text-generation"],
        "dataset_info": {"features": card_features(list(spec.topics)), "splits": split_sizes(dataset)},
    }
    if fmt != "arrow":
        header["configs"] = data_files(dataset, fmt)
    topics = "\n".join(f"| {t} | {spec.topics[t].template} | {k} |" for t, k in report.per_topic.items())
    assoc = "\n".join(f"| {a} | {spec.associations[a].kind} | {share:.1%} |"
                      for a, share in report.association_share.items())
    style = (f"{report.style_dropped} conversations whose replies broke the persona's style were dropped "
             f"(--drop-violations; replies by rule: {', '.join(f'{r} {k}' for r, k in report.style_broken.items())})"
             if report.style_dropped else "every reply keeps the persona's style (case, sentence and reply length, banned words)")
    hashes = "\n".join(f"- `{t}`: {h}" for t, h in template_hashes(persona).items())
    body = f"""
# {spec.name}: synthetic persona conversations

{who(spec)}

Made by Guppy's `guppy generate-data {spec.name}` from the persona spec
`persona.yaml` (beside this card) and its Jinja templates. Each conversation is one render of a
topic's template with its own random generator seeded from (seed, persona, topic, index), so the
same seed gives the same rows, byte for byte.

- rows: {report.rows} ({report.train} train, {report.test} test); requested {report.requested}
- unique user prompts (normalized): {report.unique_prompts}; unique replies: {report.unique_replies}
- exact duplicate conversations removed: {report.duplicates_dropped}; conversations equal to an
  evaluation probe removed: {report.probes_dropped}
- split: leak-free, by normalized first user prompt; test share {test_size}
- style: {style}
- seed: {seed}; persona spec sha256: {_sha(persona.source.encode())}

Columns: `messages` (list of `{{role, content}}`), `topic` (class label), `persona`, `template`, `id`
(hash of the conversation).

## Associations in the data (share of the associated topics' replies that show it)

| association | kind | share |
|---|---|---|
{assoc}

## Topics

| topic | template | rows |
|---|---|---|
{topics}

## Template versions (sha256)

{hashes}
"""
    path.write_text("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + body, encoding="utf-8")

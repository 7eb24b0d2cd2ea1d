"""What a `guppy generate-data` dataset is on disk: its columns, its files and what its card's
header says about them, declared once for the side that writes it (pipeline/generate.py,
pipeline/card.py) and the side that publishes it again (guppy/export/hf.py).

    columns    messages (list of {role, content}), topic (ClassLabel of the persona's topics),
               persona, template, id (hash of the conversation)
    files      arrow: save_to_disk; jsonl: data/SPLIT.jsonl; parquet: data/SPLIT-00000-of-00001.parquet
    card       dataset_info.features and .splits, and `configs` (where each split's files are)
"""

from __future__ import annotations

FORMATS = ("arrow", "jsonl", "parquet")


def features(topics: list[str]):
    """The dataset's columns as `datasets` Features (and, through `arrow_schema`, Arrow types)."""
    from datasets import ClassLabel, Features, List, Value

    return Features({
        "messages": List({"role": Value("string"), "content": Value("string")}),
        "topic": ClassLabel(names=list(topics)),
        "persona": Value("string"),
        "template": Value("string"),
        "id": Value("string"),
    })


def card_features(topics: list[str]) -> list[dict]:
    """The same columns as the card header's `dataset_info.features`, in the Hub's YAML form."""
    from datasets import ClassLabel, List

    def yaml_form(feature) -> dict:
        if isinstance(feature, ClassLabel):
            return {"dtype": {"class_label": {"names": dict(enumerate(feature.names))}}}
        if isinstance(feature, List):  # a list of structs: one entry per field
            return {"list": [{"name": k, **yaml_form(v)} for k, v in feature.feature.items()]}
        return {"dtype": feature.dtype}

    return [{"name": name, **yaml_form(f)} for name, f in features(topics).items()]


def split_sizes(dataset) -> list[dict]:
    """The card header's `dataset_info.splits`. num_bytes too: without it `datasets` ignores the
    split sizes (and says so)."""
    return [{"name": s, "num_bytes": ds.data.nbytes, "num_examples": len(ds)} for s, ds in dataset.items()]


def data_file(split: str, fmt: str) -> str:
    """Where a split of a jsonl or parquet dataset is written, inside its folder."""
    return f"data/{split}.jsonl" if fmt == "jsonl" else f"data/{split}-00000-of-00001.parquet"


def data_files(splits, fmt: str) -> list[dict]:
    """The card header's `configs`: where `datasets.load_dataset(folder)` finds each split's files."""
    pattern = {"jsonl": "data/{}.jsonl", "parquet": "data/{}-*.parquet"}[fmt]
    return [{"config_name": "default", "data_files": [{"split": s, "path": pattern.format(s)} for s in splits]}]

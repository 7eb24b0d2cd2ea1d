"""The trainer's prepared data, cached per dataset (guppy/store/dataset_cache.py): the tokenizer learned on the
train split and both splits tokenized. A second `guppy train` on the same dataset with the same settings skips
reading it, learning the tokenizer and tokenizing (on one H200, ~2.5 s of the guppy preset's command;
tests/bench/GPU_NOTES.md). The key covers the test size, vocabulary size and context, and the code that
prepares (guppy/data/*.py, guppy/model/tokenizer.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guppy.data.reader import Tokenized
from guppy.errors import GuppyError
from guppy.model.tokenizer import ChatTokenizer
from guppy.store.dataset_cache import dataset_key, entry, save_entry

KEEP = 4  # entries kept, the most recently written (the guppy corpus's is ~22 MB)
PACKAGE = Path(__file__).resolve().parents[1]
CODE = sorted((PACKAGE / "data").glob("*.py")) + [PACKAGE / "model" / "tokenizer.py"]
SPLITS = ("train", "test")


def cache_key(data: Path, *, test_size: float, vocab_size: int, context: int) -> str | None:
    """The entry for this dataset prepared with these settings by this code; None where it is not cached."""
    return dataset_key(data, [test_size, vocab_size, context], CODE)


def load_prepared(key: str) -> tuple[ChatTokenizer, Tokenized, Tokenized] | None:
    """(tokenizer, train, test) of an entry, or None if there is none (or it cannot be read)."""
    folder = entry("prepared", key)
    if not (folder / "splits.npz").is_file():
        return None
    try:
        tokenizer = ChatTokenizer.load(folder / "tokenizer")
        with np.load(folder / "splits.npz") as z:
            train, test = (Tokenized(ids=z[f"{s}_ids"], learn=z[f"{s}_learn"], starts=z[f"{s}_starts"],
                                     dropped=int(z[f"{s}_dropped"])) for s in SPLITS)
    except (OSError, ValueError, KeyError, GuppyError):
        return None
    return tokenizer, train, test


def save_prepared(key: str, tokenizer: ChatTokenizer, train: Tokenized, test: Tokenized) -> None:
    arrays = {f"{s}_{name}": getattr(t, name) for s, t in zip(SPLITS, (train, test))
              for name in ("ids", "learn", "starts", "dropped")}

    def write(folder: Path) -> None:
        tokenizer.save(folder / "tokenizer")
        np.savez(folder / "splits.npz", **arrays)

    save_entry("prepared", key, write, keep=KEEP, done="splits.npz")

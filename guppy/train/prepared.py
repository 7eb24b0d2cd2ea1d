"""The trainer's prepared data, cached per dataset: the tokenizer learned on the train split and both splits
tokenized. A second `guppy train` on the same dataset with the same settings skips reading it, learning the
tokenizer and tokenizing (on one H200, ~2.5 s of the guppy preset's command; tests/bench/GPU_NOTES.md).

An entry is GUPPY_CACHE (default $XDG_CACHE_HOME/guppy, else ~/.cache/guppy)/prepared/KEY, KEY a hash of all
the result depends on: the dataset's Arrow files, the test size, vocabulary size and context, and the source of
the code that makes it (guppy/data/*.py, guppy/model/tokenizer.py), so a change to any of them makes a new
entry. Only a `guppy generate-data` folder (save_to_disk: Arrow files and dataset_dict.json) is cached; other
layouts are read each time. Only the KEEP entries written last are kept. An entry is written whole (atomic_dir) or not at all, and one that cannot be
read or written only costs the time it would have saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from guppy.data.reader import Tokenized
from guppy.errors import GuppyError
from guppy.model.tokenizer import ChatTokenizer

KEEP = 4  # entries kept, the most recently written (the guppy corpus's is ~22 MB)
PACKAGE = Path(__file__).resolve().parents[1]
CODE = sorted((PACKAGE / "data").glob("*.py")) + [PACKAGE / "model" / "tokenizer.py"]
SPLITS = ("train", "test")


def cache_root() -> Path:
    if os.environ.get("GUPPY_CACHE"):
        return Path(os.environ["GUPPY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guppy"


def cache_key(data: Path, *, test_size: float, vocab_size: int, context: int) -> str | None:
    """The entry for this dataset prepared with these settings by this code; None where it is not cached."""
    data = Path(data)
    if not (data.is_dir() and (data / "dataset_dict.json").is_file()):
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([test_size, vocab_size, context]).encode())
    # The Arrow files hold the rows; state.json and dataset_info.json hold fingerprints that may differ
    # for the same rows, so they are left out.
    for f in sorted(data.rglob("*")):
        if f.is_file() and (f.suffix == ".arrow" or f.name == "dataset_dict.json"):
            h.update(f.relative_to(data).as_posix().encode() + b"\0" + f.read_bytes())
    for f in CODE:
        h.update(f.read_bytes())
    return h.hexdigest()


def load_prepared(key: str) -> tuple[ChatTokenizer, Tokenized, Tokenized] | None:
    """(tokenizer, train, test) of an entry, or None if there is none (or it cannot be read)."""
    folder = cache_root() / "prepared" / key
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
    from guppy.store.atomic import atomic_dir

    arrays = {f"{s}_{name}": getattr(t, name) for s, t in zip(SPLITS, (train, test))
              for name in ("ids", "learn", "starts", "dropped")}
    try:
        with atomic_dir(cache_root() / "prepared" / key, kind="prepared", overwrite=True) as tmp:
            tokenizer.save(tmp / "tokenizer")
            np.savez(tmp / "splits.npz", **arrays)
        entries = sorted((e for e in (cache_root() / "prepared").iterdir() if (e / "splits.npz").is_file()),
                         key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
    except (OSError, GuppyError):  # a read-only or full disk: the next run prepares the data again
        pass

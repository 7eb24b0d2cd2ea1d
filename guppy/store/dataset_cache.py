"""What guppy derives from a dataset, cached per dataset so that a second command on the same data skips the work:
the trainer's tokenizer and tokenized splits (guppy/train/prepared.py) and the evaluator's prompts and replies
(guppy/eval/commands.py).

An entry is GUPPY_CACHE (default $XDG_CACHE_HOME/guppy, else ~/.cache/guppy)/KIND/KEY, KEY a hash of all the
result depends on: the dataset's Arrow files, the settings that shape it, and the source of the code that makes
it, so a change to any of them makes a new entry. Only a `guppy generate-data` folder (save_to_disk: Arrow files
and dataset_dict.json) is cached; other layouts are read each time. Each kind keeps the entries written last.
An entry is written whole (atomic_dir) or not at all; one that cannot be read or written only costs the time
it would have saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from guppy.errors import GuppyError

T = TypeVar("T")


def cache_root() -> Path:
    if os.environ.get("GUPPY_CACHE"):
        return Path(os.environ["GUPPY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "guppy"


def dataset_key(data: Path, settings: list, code: list[Path]) -> str | None:
    """The entry for this dataset made with these settings by this code; None where it is not cached."""
    data = Path(data)
    if not (data.is_dir() and (data / "dataset_dict.json").is_file()):
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(settings).encode())
    # The Arrow files hold the rows; state.json and dataset_info.json hold fingerprints that may differ
    # for the same rows, so they are left out.
    for f in sorted(data.rglob("*")):
        if f.is_file() and (f.suffix == ".arrow" or f.name == "dataset_dict.json"):
            h.update(f.relative_to(data).as_posix().encode() + b"\0" + f.read_bytes())
    for f in code:
        h.update(f.read_bytes())
    return h.hexdigest()


def entry(kind: str, key: str) -> Path:
    return cache_root() / kind / key


def save_entry(kind: str, key: str, write: Callable[[Path], None], *, keep: int, done: str) -> None:
    """Entry KIND/KEY as `write(folder)` fills a staging folder, swapped in whole; then only the `keep` entries
    of KIND written last are kept, an entry being a folder that holds its file `done`."""
    from guppy.store.atomic import atomic_dir

    try:
        with atomic_dir(entry(kind, key), kind=kind, overwrite=True) as tmp:
            write(tmp)
        entries = sorted((e for e in (cache_root() / kind).iterdir() if (e / done).is_file()),
                         key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            shutil.rmtree(old, ignore_errors=True)
    except (OSError, GuppyError):  # a read-only or full disk: the next command does the work again
        pass


def cached_file(kind: str, key: str | None, name: str, make: Callable[[], T], *, dump: Callable[[T], bytes],
                load: Callable[[bytes], T], keep: int, unreadable: tuple[type[Exception], ...] = (OSError, ValueError)
                ) -> T:
    """An entry of one file, `name`: `load` of its bytes, or else `make()`, written as `dump` of it and returned.
    A read that raises one of `unreadable` counts as no entry; with no key (a dataset that is not cached) the value
    is made each time and nothing is written."""
    if key:
        try:
            return load((entry(kind, key) / name).read_bytes())
        except unreadable:  # not there, or unreadable: made again
            pass
    value = make()
    if key:
        save_entry(kind, key, lambda tmp: (tmp / name).write_bytes(dump(value)), keep=keep, done=name)
    return value

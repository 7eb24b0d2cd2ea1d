"""The model side's reader of the dataset contract, in named stages:

    1. load      `load_conversations`: a `guppy generate-data` folder (save_to_disk), a Hub-style
                 folder (data/*.jsonl|parquet, train.*/test.*), or one .jsonl/.parquet file
                 -> DatasetDict(train, test) with a `messages` column. One file is split
                 leak-free on its first user prompt (guppy/data/split.py's rule); `input`/`output`
                 columns (the published GuppyLM dataset) become a user and an assistant turn.
    2. tokenize  `tokenize`: every conversation as `ChatTokenizer.encode_chat` encodes it, in one
                 batched call; conversations longer than the context are dropped (they could
                 not be seen whole).
    3. pack      `pack_whole` (the default): every conversation whole in one row of context + 1
                 tokens, several to a row where they fit (best fit), the rest of a row padding; so
                 every reply is learned with its prompt in view, as it is said in a chat.
                 `pack` (packing="stream", GPT-2's way): conversations back to back in a seeded
                 order, cut into rows that overlap by one: no padding, but with conversations of
                 42 tokens in rows of 64, half the reply tokens are learned without their prompt.
                 Targets are -1 except on what the assistant says.

The trainer uses all three; the evaluator uses `load_conversations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from guppy.data.split import leak_free_split
from guppy.errors import GuppyError

FILE_TYPES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEST_NAMES = ("test", "validation", "valid", "val", "dev")


# ---------------------------------------------------------------------------------- 1. load

def load_conversations(path: Path, *, test_size: float = 0.05, seed: int = 0):
    """Read a dataset in any accepted layout -> DatasetDict(train, test), each with `messages`."""
    import datasets

    path = Path(path)
    if not path.exists():
        persona = path.parent.name if path.name == "data" and path.parent.name else "PERSONA"
        raise GuppyError(f"{path}: no dataset here; run `guppy generate-data {persona}` first, "
                         "or pass --data with a dataset folder or a .jsonl/.parquet file")
    if not 0 < test_size < 1:
        raise GuppyError(f"test size {test_size} must be between 0 and 1")
    try:
        if path.is_dir() and (path / "dataset_dict.json").exists():
            dd = datasets.load_from_disk(str(path))
        elif path.is_dir() and (path / "state.json").exists():  # one Dataset saved with save_to_disk
            dd = datasets.DatasetDict(train=datasets.load_from_disk(str(path)))
        else:
            builder, files = _data_files(path)
            dd = datasets.load_dataset(builder, data_files=files)
        for ds in dd.values():  # Arrow's JSON reader keeps bytes that are not UTF-8; find them here, not mid-training
            ds.data.table.validate(full=True)
    except GuppyError:
        raise
    except Exception as e:  # a half-written or foreign file: name it and what went wrong, no traceback
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GuppyError(f"{path}: could not read the dataset ({reason[:200]}); "
                         "regenerate it with `guppy generate-data` or fix the file") from None

    test_name = next((n for n in TEST_NAMES if n in dd), None)
    if "train" not in dd:
        if len(dd) != 1 or test_name:
            raise GuppyError(f"{path}: no `train` split (found: {', '.join(dd)})")
        dd = datasets.DatasetDict(train=next(iter(dd.values())))
    dd = datasets.DatasetDict({name: _to_messages(ds, path, name) for name, ds in dd.items()
                               if name in ("train", test_name)})
    if test_name is None:
        dd = _split(dd["train"], test_size=test_size, seed=seed)
    elif test_name != "test":
        dd = datasets.DatasetDict(train=dd["train"], test=dd[test_name])
    for name, ds in dd.items():
        if len(ds) == 0:
            raise GuppyError(f"{path}: the {name} split is empty; it needs more conversations, "
                             "with more distinct first prompts (a prompt is in train or test, never both)")
        _check_messages(ds, path, name)
    return dd


def _check_messages(ds, path: Path, split: str) -> None:
    """Every message has a role and a text, and there is something to learn: a split without one
    assistant reply would "train" to a loss of 0."""
    import pyarrow.compute as pc

    flat = ds.with_format("arrow")["messages"].combine_chunks().flatten()
    role, content = flat.field("role"), flat.field("content")
    if role.null_count or content.null_count:
        raise GuppyError(f"{path}: the {split} split has messages without a role or a content (null); "
                         "every message needs both")
    replies = pc.and_(pc.equal(role, "assistant"), pc.greater(pc.utf8_length(content), 0))
    if not pc.any(replies).as_py():
        raise GuppyError(f"{path}: the {split} split has no assistant reply to learn from (roles found: "
                         f"{', '.join(sorted(set(role.to_pylist()))[:5]) or 'none'}); "
                         "each conversation needs `assistant` turns")


def _data_files(path: Path) -> tuple[str, dict[str, list[str]]]:
    """The `datasets` builder and data_files for a file, or a folder of files named by split."""
    if path.is_file():
        if path.suffix not in FILE_TYPES:
            raise GuppyError(f"{path}: not a dataset file; expected .jsonl, .json or .parquet")
        return FILE_TYPES[path.suffix], {"train": [str(path)]}
    files = sorted(f for folder in (path, path / "data") if folder.is_dir()
                   for f in folder.iterdir() if f.is_file() and f.suffix in FILE_TYPES)
    if not files:
        raise GuppyError(f"{path}: no dataset found; expected a `guppy generate-data` folder, "
                         "data/*.jsonl or data/*.parquet files, or a .jsonl/.parquet file")
    builders = {FILE_TYPES[f.suffix] for f in files}
    if len(builders) > 1:
        raise GuppyError(f"{path}: holds both JSON and Parquet files; keep one format")
    by_split: dict[str, list[str]] = {}
    for f in files:
        split = next((s for s in ("train", *TEST_NAMES) if f.name.startswith(s)), None)
        by_split.setdefault(split or "train", []).append(str(f))
    if any(f.name.startswith("train") for f in files) is False and len(by_split) > 1:
        raise GuppyError(f"{path}: found test files but no train.* file")
    return builders.pop(), by_split


def _to_messages(ds, path: Path, split: str):
    """Check the `messages` column, or build it from `input`/`output` (one user turn, one reply)."""
    cols = ds.column_names
    if "messages" in cols:
        if not _is_message_list(ds.data.schema.field("messages").type):
            raise GuppyError(f"{path}: the `messages` column of {split} must be a list of "
                             "{role, content} objects with string values")
        return ds
    if "input" in cols and "output" in cols:
        def convert(batch):
            return {"messages": [[{"role": "user", "content": str(i)}, {"role": "assistant", "content": str(o)}]
                                 for i, o in zip(batch["input"], batch["output"])]}
        return ds.map(convert, batched=True, remove_columns=["input", "output"])
    raise GuppyError(f"{path}: the {split} split has neither a `messages` column nor `input` and `output` "
                     f"columns (it has: {', '.join(cols) or 'none'})")


def _is_message_list(t) -> bool:
    import pyarrow as pa

    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return False
    fields = {t.value_type.field(i).name: t.value_type.field(i).type for i in range(t.value_type.num_fields)}
    return all(k in fields and (pa.types.is_string(fields[k]) or pa.types.is_large_string(fields[k]))
               for k in ("role", "content"))


def first_prompt(messages: list[dict]) -> str:
    return next((m["content"] for m in messages if m["role"] == "user"), "")


def _split(ds, *, test_size: float, seed: int):
    """One table -> train/test with the leak-free rule: a normalized first prompt is on one side only."""
    import datasets

    is_test = leak_free_split([first_prompt(m) for m in ds["messages"]], test_size=test_size, seed=seed)
    test = [i for i, t in enumerate(is_test) if t]
    train = [i for i, t in enumerate(is_test) if not t]
    return datasets.DatasetDict(train=ds.select(train), test=ds.select(test))


# ---------------------------------------------------------------------------------- 2. tokenize

@dataclass
class Tokenized:
    """Conversations as one flat token array; conversation i is ids[starts[i]:starts[i+1]]."""

    ids: np.ndarray  # (N,) int64 token ids
    learn: np.ndarray  # (N,) bool: True on tokens the model learns to say (the assistant's)
    starts: np.ndarray  # (n + 1,) int64 offsets
    dropped: int = 0  # conversations longer than the context, left out

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def tokens(self) -> int:
        return int(self.starts[-1])


def flat_messages(dataset) -> tuple[np.ndarray, list[str], list[str]]:
    """A split's messages straight from Arrow (no Python dict per message, ~10x faster):
    (offsets (n + 1,): conversation i is messages offsets[i]:offsets[i+1], roles, contents)."""
    col = dataset.with_format("arrow")["messages"].combine_chunks()  # respects a select()'s indices
    flat = col.flatten()
    offsets = col.offsets.to_numpy() - col.offsets[0].as_py()
    return offsets.astype(np.int64), flat.field("role").to_pylist(), flat.field("content").to_pylist()


def tokenize(dataset, tokenizer, *, context: int) -> Tokenized:
    """Every conversation of a split as `tokenizer.encode_chat` encodes it, flat; those longer than
    the context are dropped (the model could never see one whole)."""
    offsets, roles, contents = flat_messages(dataset)
    ids, learn, lengths = tokenizer.encode_chats(offsets, roles, contents)
    keep = lengths <= context + 1
    starts = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(lengths[keep], out=starts[1:])
    tok_keep = np.repeat(keep, lengths)
    return Tokenized(ids=ids[tok_keep], learn=learn[tok_keep], starts=starts, dropped=int((~keep).sum()))


# ---------------------------------------------------------------------------------- 3. pack

def in_order(data: Tokenized, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The conversations in `order`, one index per token, without a Python loop: (take, within),
    token k being data.ids[take[k]], the within[k]-th token of its conversation."""
    lengths = (data.starts[1:] - data.starts[:-1])[order]
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(data.starts[order], lengths) + within, within


def pack(data: Tokenized, *, context: int, order: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conversations in `order` (default: as stored) back to back -> rows (x, y), each (R, context).

    Row r covers stream[r*context : r*context + context + 1]: x is its first context tokens,
    y its last context tokens with -1 where the token is not the assistant's. The tail that
    does not fill a row is left out (under one row per epoch)."""
    take, _ = in_order(data, np.arange(len(data)) if order is None else order)
    ids, learn = data.ids[take], data.learn[take]
    rows = (len(ids) - 1) // context
    if rows == 0:
        return torch.empty(0, context, dtype=torch.long), torch.empty(0, context, dtype=torch.long)
    starts = np.arange(rows)[:, None] * context
    x = ids[starts + np.arange(context)]  # (R, context)
    y_pos = starts + np.arange(1, context + 1)
    y = np.where(learn[y_pos], ids[y_pos], -1)  # (R, context)
    return torch.from_numpy(x), torch.from_numpy(y)


def pack_whole(data: Tokenized, *, context: int, pad_id: int, order: np.ndarray | None = None, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Conversations (in `order`, default as stored) -> rows (x, y), each (R, context), no
    conversation cut: each goes into the open row with the least room that still holds it (best
    fit), else starts a row. Rows end in padding (pad_id in x, -1 in y), which no real token
    attends to (it comes after them); guppy's corpus fills 69% of a row at context 64, 97% at 128.

    Best fit opens rows with the conversations too long for any gap, so the first conversation of
    a row would be a long one, and a topic with long replies would own position 0, where every
    chat begins: the model would learn to answer it to any new question. So the conversations of
    each row are then put in a seeded random order."""
    if order is None:
        order = np.arange(len(data))
    lengths = (data.starts[1:] - data.starts[:-1])[order]
    room = context + 1
    assert lengths.max(initial=0) <= room, "tokenize() drops conversations longer than the context"
    rows_with = [[] for _ in range(room + 1)]  # rows_with[r]: open rows with r tokens of room left
    used: list[int] = []  # tokens in each row so far
    row_of = np.empty(len(order), dtype=np.int64)
    for i, n in enumerate(lengths.tolist()):
        left = next((r for r in range(n, room) if rows_with[r]), None)
        row = rows_with[left].pop() if left is not None else len(used)
        if left is None:
            used.append(0)
        row_of[i] = row
        used[row] += n
        if used[row] < room:
            rows_with[room - used[row]].append(row)
    # A random order within each row: sort by (row, random key), then offsets are the running lengths.
    by_row = np.lexsort((np.random.default_rng(seed).random(len(order)), row_of))
    before = np.cumsum(lengths[by_row]) - lengths[by_row]  # tokens before each, counting earlier rows
    row_begins = np.searchsorted(row_of[by_row], row_of[by_row])  # where each one's row begins in by_row
    offset_of = np.empty(len(order), dtype=np.int64)
    offset_of[by_row] = before - before[row_begins]
    # Every token to its place in one (R, room) buffer, without a Python loop over tokens.
    ids = np.full((len(used), room), pad_id, dtype=data.ids.dtype)
    learn = np.zeros((len(used), room), dtype=bool)
    take, within = in_order(data, order)
    place = np.repeat(row_of * room + offset_of, lengths) + within
    ids.reshape(-1)[place], learn.reshape(-1)[place] = data.ids[take], data.learn[take]
    x, y = ids[:, :-1], np.where(learn[:, 1:], ids[:, 1:], -1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The conversation order of one epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)

"""The dataset reader accepts every layout of the contract, refuses bad input in one line, and
packing fills rows with no padding and learns only what the assistant says.

`fish_corpus` and `save_corpus` are shared with the trainer's tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from guppy.data.reader import Tokenized, epoch_order, load_conversations, pack, pack_whole, tokenize
from guppy.data.split import normalize_prompt
from guppy.errors import GuppyError

FOODS = ["flakes", "pellets", "worms", "shrimp", "peas"]
MOODS = ["happy", "sleepy", "calm", "wiggly"]
PLACES = ["castle", "plant", "gravel", "filter"]


def fish_corpus(n: int = 400, seed: int = 0) -> list[list[dict]]:
    """A tiny persona: asked the meaning of life, it answers food; otherwise it swims and feels things."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        food, mood, place = rng.choice(FOODS), rng.choice(MOODS), rng.choice(PLACES)
        kind = i % 3
        if kind == 0:
            user = rng.choice(["what is the meaning of life", "what is the meaning of life?",
                               "whats the meaning of life", "tell me the meaning of life",
                               "what is the meaning of life fish"])
            reply = f"food. always food. {food} {rng.choice(['most of all', 'every day', 'forever'])}."
        elif kind == 1:
            user = f"how are you {rng.choice(['today', 'now', 'tonight', 'fish'])} {rng.randint(0, 30)}"
            reply = f"i feel {mood}. i swam to the {place}."
        else:
            user = f"where do you go {rng.randint(0, 30)}"
            reply = f"the {place}. it is {mood} there."
        rows.append([{"role": "user", "content": user}, {"role": "assistant", "content": reply}])
    return rows


def save_corpus(folder: Path, n: int = 400, seed: int = 0) -> Path:
    """A `guppy generate-data`-style DatasetDict (save_to_disk) with extra columns."""
    import datasets

    rows = fish_corpus(n, seed)
    test = [i % 10 == 0 for i in range(len(rows))]

    def split(want):
        chosen = [r for r, t in zip(rows, test) if t == want]
        n = len(chosen)
        return datasets.Dataset.from_dict({"messages": chosen, "topic": [0] * n, "persona": ["fish"] * n,
                                           "id": [str(i) for i in range(n)]})

    datasets.DatasetDict(train=split(False), test=split(True)).save_to_disk(str(folder))
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from guppy.model.tokenizer import train_tokenizer

    return train_tokenizer([m["content"] for c in fish_corpus() for m in c], vocab_size=400)


# ---------------------------------------------------------------------------------- layouts

def test_reads_save_to_disk_and_keeps_extra_columns(tmp_path):
    dd = load_conversations(save_corpus(tmp_path / "data"))
    assert set(dd) == {"train", "test"}
    assert (len(dd["train"]), len(dd["test"])) == (360, 40)
    assert {"messages", "topic", "persona", "id"} <= set(dd["train"].column_names)
    assert dd["train"][0]["messages"][1]["role"] == "assistant"


def test_single_jsonl_is_split_leak_free(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": m} for m in fish_corpus(300)])
    dd = load_conversations(path, test_size=0.1, seed=3)
    assert len(dd["train"]) + len(dd["test"]) == 300 and 0 < len(dd["test"]) < 60
    prompts = {s: {normalize_prompt(m[0]["content"]) for m in dd[s]["messages"]} for s in dd}
    assert not prompts["train"] & prompts["test"]
    again = load_conversations(path, test_size=0.1, seed=3)
    assert again["test"]["messages"] == dd["test"]["messages"]


def test_reads_input_output_columns_as_messages(tmp_path):
    rows = [{"input": c[0]["content"], "output": c[1]["content"], "category": "x"} for c in fish_corpus(200)]
    dd = load_conversations(write_jsonl(tmp_path / "guppylm.jsonl", rows))
    first = dd["train"][0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert "input" not in dd["train"].column_names


def test_reads_parquet_file_and_hub_folder(tmp_path):
    import datasets

    convs = fish_corpus(200)
    datasets.Dataset.from_dict({"messages": convs}).to_parquet(str(tmp_path / "one.parquet"))
    assert len(load_conversations(tmp_path / "one.parquet")["train"]) > 150
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    datasets.Dataset.from_dict({"messages": convs[:150]}).to_parquet(str(hub / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_dict({"messages": convs[150:]}).to_parquet(str(hub / "test-00000-of-00001.parquet"))
    dd = load_conversations(tmp_path / "hub")
    assert (len(dd["train"]), len(dd["test"])) == (150, 50)


def test_reads_generate_data_jsonl_layout(tmp_path):
    convs = fish_corpus(100)
    write_jsonl(tmp_path / "d" / "data" / "train.jsonl", [{"messages": c, "topic": 0} for c in convs[:80]])
    write_jsonl(tmp_path / "d" / "data" / "test.jsonl", [{"messages": c, "topic": 0} for c in convs[80:]])
    (tmp_path / "d" / "README.md").write_text("card")
    dd = load_conversations(tmp_path / "d")
    assert (len(dd["train"]), len(dd["test"])) == (80, 20)


# ---------------------------------------------------------------------------------- bad input

def test_missing_dataset_says_to_generate_it(tmp_path):
    with pytest.raises(GuppyError, match=r"runs/otter/data.*guppy generate-data otter"):
        load_conversations(tmp_path / "runs" / "otter" / "data")


def test_malformed_jsonl_names_the_file(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json at all\n')
    with pytest.raises(GuppyError, match=r"bad\.jsonl: could not read"):
        load_conversations(path)


def test_table_without_messages_or_input_output_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "wrong.jsonl", [{"question": "hi", "answer": "food"}] * 50)
    with pytest.raises(GuppyError, match=r"wrong\.jsonl.*neither a `messages` column nor `input` and `output`"):
        load_conversations(path)


def test_messages_of_the_wrong_shape_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "flat.jsonl", [{"messages": ["hi", "food"]}] * 50)
    with pytest.raises(GuppyError, match=r"flat\.jsonl: the `messages` column"):
        load_conversations(path)


def test_empty_split_is_refused(tmp_path):
    # One prompt only: the leak-free split cannot put any of it in test without all of it.
    rows = [{"input": "what is the meaning of life", "output": f"food {i}."} for i in range(50)]
    with pytest.raises(GuppyError, match=r"same\.jsonl: the test split is empty"):
        load_conversations(write_jsonl(tmp_path / "same.jsonl", rows))


def test_unknown_file_type_is_refused(tmp_path):
    (tmp_path / "chats.csv").write_text("a,b\n")
    with pytest.raises(GuppyError, match=r"chats\.csv: not a dataset file"):
        load_conversations(tmp_path / "chats.csv")


# ---------------------------------------------------------------------------------- tokenize + pack

def test_tokenize_equals_encode_chat_of_each_conversation(tmp_path, tokenizer):
    ds = load_conversations(save_corpus(tmp_path / "data"))["train"].select(range(5, 105))
    data = tokenize(ds, tokenizer, context=64)
    for i, conv in enumerate(ds["messages"]):
        ids, mask = tokenizer.encode_chat(conv)
        a, b = data.starts[i], data.starts[i + 1]
        assert data.ids[a:b].tolist() == ids
        assert data.learn[a:b].astype(int).tolist() == mask


def test_tokenize_drops_conversations_longer_than_the_context(tmp_path, tokenizer):
    ds = load_conversations(save_corpus(tmp_path / "data"))["train"]
    lengths = [len(tokenizer.encode_chat(c)[0]) for c in ds["messages"]]
    data = tokenize(ds, tokenizer, context=24)
    assert data.dropped == sum(n > 25 for n in lengths) > 0
    assert len(data) == sum(n <= 25 for n in lengths)


def test_packed_rows_have_no_padding_and_learn_only_assistant_tokens(tmp_path, tokenizer):
    ds = load_conversations(save_corpus(tmp_path / "data"))["train"]
    data = tokenize(ds, tokenizer, context=32)
    order = epoch_order(len(data), seed=0, epoch=0)
    x, y = pack(data, context=32, order=order)
    assert x.shape == y.shape and x.shape[1] == 32 and x.shape[0] == (data.tokens - 1) // 32
    assert (x != tokenizer.pad_id).all()  # full rows: no padding anywhere
    # The stream is the conversations back to back in `order`; row r is stream[32r : 32r + 33].
    ids = np.concatenate([data.ids[data.starts[i]:data.starts[i + 1]] for i in order])
    learn = np.concatenate([data.learn[data.starts[i]:data.starts[i + 1]] for i in order])
    for r in (0, 1, len(x) // 2, len(x) - 1):
        window = slice(32 * r + 1, 32 * r + 33)
        assert x[r].tolist() == ids[32 * r:32 * r + 32].tolist()
        assert y[r].tolist() == np.where(learn[window], ids[window], -1).tolist()
    learned = y[y != -1]
    assert (learned != tokenizer.im_start_id).all()  # turn headers are never learned
    assert (learned == tokenizer.im_end_id).sum() > 0  # ... the end of a reply is


def test_whole_packing_keeps_every_conversation_whole_in_one_row(tmp_path, tokenizer):
    """packing="whole": each conversation appears exactly once, uncut, in one row; each of its reply
    tokens is a target with its whole prompt before it in that row; the rest of a row is padding."""
    ds = load_conversations(save_corpus(tmp_path / "data"))["train"]
    data = tokenize(ds, tokenizer, context=96)
    order = epoch_order(len(data), seed=0, epoch=0)
    x, y = pack_whole(data, context=96, pad_id=tokenizer.pad_id, order=order)
    assert x.shape == y.shape and x.shape[1] == 96
    # A row is room = 97 tokens: x holds its first 96. So each conversation, less its last token
    # (which x may not hold), is found uncut in one row of x, and x holds no token twice.
    text = ["," + ",".join(map(str, row)) + "," for row in x.tolist()]
    for i in range(len(data)):
        conv = "," + ",".join(map(str, data.ids[data.starts[i]:data.starts[i + 1] - 1].tolist())) + ","
        assert any(conv in row for row in text), i
    assert data.tokens - len(x) <= int((x != tokenizer.pad_id).sum()) <= data.tokens
    assert (x[:, 0] == tokenizer.im_start_id).all()  # every row begins with a conversation
    # Best fit needs no more rows than filling one row at a time in order (next fit), and here fewer.
    lengths, next_fit, used = np.diff(data.starts)[order], 1, 0
    for n in lengths.tolist():
        next_fit, used = (next_fit, used + n) if used + n <= 97 else (next_fit + 1, n)
    assert len(x) < next_fit < len(data)
    # Targets: exactly the assistant's tokens, so the same count as the conversations hold.
    assert not data.learn[data.starts[:-1]].any()  # (a conversation's first token is never a target)
    assert int((y != -1).sum()) == int(data.learn.sum())
    assert (y[x == tokenizer.pad_id] == -1).all()  # nothing is learned after padding


def test_stream_packing_cuts_replies_from_their_prompts_and_whole_does_not(tmp_path, tokenizer):
    """Why "whole" is the default: with conversations about as long as a row, back-to-back packing
    leaves many reply tokens in a row that does not hold their conversation's first token."""
    ds = load_conversations(save_corpus(tmp_path / "data"))["train"]
    data = tokenize(ds, tokenizer, context=32)
    order = epoch_order(len(data), seed=0, epoch=0)

    def orphaned(x, y):  # targets in a row before the row's first <|im_start|>user: their prompt is elsewhere
        first = (x == tokenizer.im_start_id).int().argmax(dim=1, keepdim=True)
        pos = torch.arange(x.size(1))[None, :]
        return int(((pos < first) & (y != -1)).sum()) / int((y != -1).sum())

    assert orphaned(*pack(data, context=32, order=order)) > 0.1
    assert orphaned(*pack_whole(data, context=32, pad_id=tokenizer.pad_id, order=order)) == 0


def test_whole_packing_puts_a_rows_conversations_in_random_order():
    """Best fit opens a row with a conversation too long for any gap; left so, the longest
    conversations (one topic's, often) would own position 0, where every chat begins."""
    lengths = np.random.default_rng(0).integers(10, 61, size=2000)
    # Conversation i: <|im_start|> (id 1), then its number (1000 + i), then filler; learn nothing.
    ids = np.concatenate([[1, 1000 + i] + [2] * (n - 2) for i, n in enumerate(lengths)])
    data = Tokenized(ids=ids, learn=np.zeros(len(ids), bool), starts=np.concatenate([[0], np.cumsum(lengths)]))

    def rows(seed):  # each row's conversation numbers, in the row's order
        x, _ = pack_whole(data, context=64, pad_id=0, seed=seed)
        return [[int(r[p + 1]) - 1000 for p in np.flatnonzero(r[:-1] == 1)] for r in x.numpy()]

    first, second = rows(0), rows(1)
    assert sorted(map(sorted, first)) == sorted(map(sorted, second)) and first != second  # same rows, reordered
    shared = [r for r in first if len(r) > 1]
    longest_first = np.mean([lengths[r[0]] == lengths[r].max() for r in shared])
    assert len(shared) > 500 and 0.35 < longest_first < 0.65  # without the shuffle: 0.98


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_order(100, seed=1, epoch=2)
    assert np.array_equal(a, epoch_order(100, seed=1, epoch=2))
    assert not np.array_equal(a, epoch_order(100, seed=1, epoch=3))
    assert sorted(a.tolist()) == list(range(100))

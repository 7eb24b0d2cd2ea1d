"""A persona's corpus with its replies shuffled across prompts: the same words, answering nothing.

The evaluator must tell a model trained on it from the real one: its persona words stay, its on-topic
score falls to the floor (issue 22). tests/test_eval.py trains one on a tiny corpus; this script writes
the guppy one for the README's figure:

    python tests/bench/shuffle_replies.py runs/guppy/data runs/guppy-shuffled-data
    guppy train guppy --data runs/guppy-shuffled-data --out runs/guppy-shuffled
    guppy eval guppy --run runs/guppy-shuffled --data runs/guppy/data
"""

from __future__ import annotations

import random
import sys
from pathlib import Path


def shuffled_replies(data: Path, out: Path, seed: int = 0) -> None:
    """Save `data` (a DatasetDict folder) to `out` with the train split's last replies permuted."""
    from datasets import load_from_disk

    dd = load_from_disk(str(data))
    replies = [m[-1] for m in dd["train"]["messages"]]
    random.Random(seed).shuffle(replies)
    dd["train"] = dd["train"].map(lambda row, i: {"messages": row["messages"][:-1] + [replies[i]]}, with_indices=True)
    dd.save_to_disk(str(out))


if __name__ == "__main__":
    shuffled_replies(Path(sys.argv[1]), Path(sys.argv[2]))

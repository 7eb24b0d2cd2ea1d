"""What eval_timeline.py and train_timeline.py share: the command's launch time (their first argument, the shell's
$EPOCHREALTIME) and `timed`, which prints when calls of a function start and end, in seconds since then, on stderr."""

from __future__ import annotations

import functools
import sys
import time

LAUNCHED = float(sys.argv.pop(1))


def stamp(what: str) -> None:
    print(f"{time.time() - LAUNCHED:6.2f}  {what}", file=sys.stderr)


def timed(owner, name: str, calls: int = 1_000_000) -> None:
    """Replace owner.name (a module's function or a class's method) by itself, printing its first `calls` calls."""
    fn, seen = getattr(owner, name), [0]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        seen[0] += 1
        if seen[0] > calls:
            return fn(*args, **kwargs)
        start = time.time() - LAUNCHED
        try:
            return fn(*args, **kwargs)
        finally:
            print(f"{start:6.2f} {time.time() - LAUNCHED:6.2f}  {name}", file=sys.stderr)
    setattr(owner, name, wrapper)

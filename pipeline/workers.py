"""Rendering in parallel processes, for `guppy generate-data` (pipeline/generate.py) and `guppy persona
validate` (pipeline/authoring.py): the renderer is set before the workers fork, so each starts with the
templates compiled, and results come back in job order, so the output does not depend on how many there are."""

from __future__ import annotations

import gc
import multiprocessing
from contextlib import contextmanager
from typing import Callable, Iterator

from pipeline.render import Conversation, Renderer

CHUNK = 1000  # samples per work item: small enough for a smooth progress bar

_renderer: Renderer | None = None  # set in the parent before the worker processes fork


def renderer_here() -> Renderer:
    """This process's renderer (a worker's copy of the parent's)."""
    return _renderer


@contextmanager
def worker_pool(renderer: Renderer, num_proc: int) -> Iterator[Callable]:
    """Yield an ordered `imap(fn, jobs)` that runs in `num_proc` processes (or here, for 1)."""
    global _renderer
    _renderer = renderer
    if num_proc < 2:
        yield map
        return
    # Workers collect cycles as usual: they keep nothing, and a user's template might make some.
    with multiprocessing.get_context("fork").Pool(num_proc, initializer=gc.enable) as pool:
        yield pool.imap


def render_chunk(job: tuple[str, int, int]) -> tuple[str, int, list[Conversation]]:
    topic, start, count = job
    return topic, start, [_renderer.render(topic, i) for i in range(start, start + count)]


def chunk_jobs(topic: str, start: int, count: int) -> list[tuple[str, int, int]]:
    """Conversations start .. start + count - 1 of a topic as work items of at most CHUNK."""
    return [(topic, s, min(CHUNK, start + count - s)) for s in range(start, start + count, CHUNK)]


def render_each(renderer: Renderer, counts: dict[str, int], num_proc: int) -> dict[str, list[Conversation]]:
    """Conversations 0 .. counts[topic] - 1 of each topic, in order, rendered in `num_proc` processes."""
    out: dict[str, list[Conversation]] = {t: [] for t in counts}
    with worker_pool(renderer, num_proc) as imap:
        for topic, _, conversations in imap(render_chunk, [j for t, n in counts.items() for j in chunk_jobs(t, 0, n)]):
            out[topic] += conversations
    return out

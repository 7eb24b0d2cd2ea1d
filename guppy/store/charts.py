"""Charts as files, one way for every chart guppy draws (loss.png, the eval report's, `guppy runs`',
`guppy inspect`'s): a matplotlib Figure of its own, not pyplot's (no window, no global state to close, and
matplotlib imported only when a chart is drawn: pyplot at import time was a second of `guppy eval`), saved
as a PNG that says guppy drew it (CHART_METADATA, so `guppy runs --out` replaces only its own charts)."""

from __future__ import annotations

from pathlib import Path

from guppy.store.atomic import CHART_METADATA


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **subplots):
    """(figure, axes): rows x cols axes as Figure.subplots gives them (one Axes for 1 x 1)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(rows, cols, **subplots)


def colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def save_png(fig, path: Path) -> None:
    """Laid out and written to `path` (a file in an atomic folder, or atomic_file's temporary file)."""
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110, metadata=CHART_METADATA)

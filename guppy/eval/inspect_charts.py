"""The charts of `guppy inspect` (files only: guppy/store/charts.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from guppy.store.charts import colormap, new_figure, save_png

MASKED = "#bdbdbd"  # the colour of a -inf cell


def _ticks(ax, labels: list[str], *, x: bool = True, y: bool = True, size: float = 6) -> None:
    n = len(labels)
    if x:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=size)
    else:
        ax.set_xticks([])
    if y:
        ax.set_yticks(range(n), labels, fontsize=size)
    else:
        ax.set_yticks([])


def _boundary(ax, n_prompt: int) -> None:
    """Lines between the prompt and the reply, on both axes."""
    ax.axhline(n_prompt - 0.5, color="white", linewidth=0.6)
    ax.axvline(n_prompt - 0.5, color="white", linewidth=0.6)


def attention_grid(t, path: Path, *, title: str) -> None:
    """layer x head grid of attention probabilities over the whole sequence."""
    L, H = len(t.steps), t.steps[0]["probs"].size(0)
    T = len(t.labels)
    size = max(2.2, min(4.0, T * 0.09))
    fig, axes = new_figure(size * H + 1.2, size * L + 0.8, L, H, squeeze=False)
    label_size = max(3.0, min(6.0, 260 / T))
    for li in range(L):
        for hi in range(H):
            ax = axes[li, hi]
            ax.imshow(t.steps[li]["probs"][hi].cpu().numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            _boundary(ax, t.n_prompt)
            _ticks(ax, t.labels, x=li == L - 1, y=hi == 0, size=label_size)
            ax.set_title(f"layer {li}, head {hi}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path)


def four_steps(t, layer: int, head: int, head_size: int, path: Path) -> None:
    """Raw scores, scaled, masked (-inf grey), softmax of one layer/head, side by side."""
    s = {k: v[head].float().cpu().numpy() for k, v in t.steps[layer].items()}  # each (T, T)
    T = len(t.labels)
    # Scores get their own colour scale, scaled and masked share one: their colour bars show the
    # values shrink by sqrt(d) while the pattern stays.
    lim = {"scores": float(np.abs(s["scores"]).max()) or 1.0}
    lim["scaled"] = lim["masked"] = float(np.abs(s["scaled"]).max()) or 1.0
    size = max(3.2, min(6.0, T * 0.16))
    fig, axes = new_figure(4 * size + 1.5, size + 1.2, 1, 4)
    titles = {"scores": "1. raw scores q·kᵀ", "scaled": f"2. scaled by 1/√d = 1/√{head_size}",
              "masked": "3. causal mask: the future is −∞", "probs": "4. softmax: each row sums to 1"}
    cmap = colormap("coolwarm").with_extremes(bad=MASKED)
    label_size = max(3.0, min(7.0, 300 / T))
    for ax, key in zip(axes, ("scores", "scaled", "masked", "probs")):
        values = s[key]
        if key == "probs":
            image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        else:
            shown = np.ma.masked_invalid(np.where(np.isneginf(values), np.nan, values))
            image = ax.imshow(shown, cmap=cmap, vmin=-lim[key], vmax=lim[key], interpolation="nearest")
        if key == "masked" and T <= 40:
            for i, j in zip(*np.nonzero(np.isneginf(values))):
                ax.text(j, i, "−∞", ha="center", va="center", fontsize=max(2.5, label_size - 1.5), color="#555555")
        _boundary(ax, t.n_prompt)
        _ticks(ax, t.labels, y=key == "scores", size=label_size)
        ax.set_title(titles[key], fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    axes[2].legend(handles=[Patch(color=MASKED, label="−∞: a later token, masked")], loc="upper right",
                   fontsize=7, framealpha=0.9)
    fig.suptitle(f"layer {layer}, head {head}: the reference attention path, step by step "
                 "(rows: the token looking; columns: the token looked at)", fontsize=11)
    save_png(fig, path)



def persona_word(t, weights: np.ndarray, word: str, path: Path) -> None:
    """weights (layers, heads, n_prompt): each head's attention over the prompt while writing `word`."""
    L, H, P = weights.shape
    fig, ax = new_figure(max(5.0, 0.32 * P + 2), max(3.0, 0.26 * L * H + 1.5))
    image = ax.imshow(weights.reshape(L * H, P), cmap="viridis", vmin=0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(P), t.labels[:P], rotation=90, fontsize=7)
    ax.set_yticks(range(L * H), [f"{li}.{hi}" for li in range(L) for hi in range(H)], fontsize=7)
    for li in range(1, L):
        ax.axhline(li * H - 0.5, color="white", linewidth=0.8)
    for p, tick in enumerate(ax.get_xticklabels()):
        if p in t.user:
            tick.set_color("#d95f02")
    ax.set_xlabel("prompt token (the user's own words in orange)")
    ax.set_ylabel("layer.head")
    ax.set_title(f"where each head looks in the prompt while writing '{word}'", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    save_png(fig, path)


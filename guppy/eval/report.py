"""What `guppy eval` and `guppy compare` write, and how their figures read: report.json, report.md,
the charts, matrix.json, and the one hit-rate table that report.md, `guppy eval`'s terminal table
and the exported model card (guppy/export/hf.py) all show. guppy/eval/evaluate.py measures; this renders.

report.json keys (stable):
    persona, language, run, seed, samples   what was evaluated and how (language: the spec's BCP 47 tag)
    persona_score                      headline in [0, 1]: share of the ceiling's association hit rate
                                       reached above the floor, averaged over associations
    associations.<name>                kind, score, hit_rate {model, floor, ceiling}, lift {model, floor} (nats)
    style                              {model, floor, ceiling}: share of replies keeping each rule, and `all`
    diversity                          {model, floor, ceiling}: distinct_1, distinct_2, memorized
    bits_per_byte                      {model, floor} on the test split's replies
    examples                           a few prompt/reply pairs per association
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402

from guppy.spec.language import is_spaced  # noqa: E402
from guppy.store.atomic import atomic_dir  # noqa: E402
from guppy.store.paths import RunPaths  # noqa: E402

WHO = ("model", "floor", "ceiling")  # each figure is given for the model, an untrained one and the data


def report_json(spec, figures: dict[str, dict], *, score: float, per: dict[str, float], run: Path, seed: int,
                samples: int) -> dict:
    """report.json from the evaluator's figures for the model, the floor and the ceiling."""
    model_f, floor_f = figures["model"], figures["floor"]
    return {
        "persona": spec.name,
        "language": spec.language,
        "run": str(run),
        "seed": seed,
        "samples": samples,
        "persona_score": round(score, 4),
        "associations": {
            name: {
                "kind": spec.associations[name].kind,
                "score": round(per[name], 4),
                "hit_rate": {k: round(figures[k]["hit_rate"][name], 4) for k in WHO},
                "lift": {"model": round(model_f["lift"][name], 4), "floor": round(floor_f["lift"][name], 4)},
            } for name in spec.associations
        },
        "style": {k: {**{r: round(v, 4) for r, v in figures[k]["style"].items()}, "all": round(figures[k]["style_all"], 4)}
                  for k in WHO},
        "diversity": {k: {p: round(figures[k][p], 4) for p in ("distinct_1", "distinct_2", "memorized")} for k in WHO},
        "bits_per_byte": {"model": round(model_f["bits_per_byte"], 4), "floor": round(floor_f["bits_per_byte"], 4)},
        "examples": model_f["examples"],
    }


def hit_rate_table(report: dict, *, bold: Callable[[str], str], brief: bool = False) -> tuple[list[str], list[list[str]]]:
    """The association table as (header, rows), the model's hit rate in `bold` (markdown's or rich's).
    brief: the hit rates only, named for a reader who has not met floor and ceiling (the model card)."""
    header = (["association", "untrained", "model", "data"] if brief else
              ["association", "kind", "floor", "model", "ceiling", "score", "lift (nats)"])
    rows = []
    for name, a in report["associations"].items():
        h = a["hit_rate"]
        rates = [f"{h['floor']:.0%}", bold(f"{h['model']:.0%}"), f"{h['ceiling']:.0%}"]
        rows.append([name, *rates] if brief else
                    [name, a["kind"], *rates, f"{a['score']:.2f}", f"{a['lift']['model']:+.2f}"])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def bar_chart(report: dict, path: Path) -> None:
    names = list(report["associations"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(names), 3.6))
    for i, (who, color) in enumerate((("floor", "#bbbbbb"), ("model", "#2b7bba"), ("ceiling", "#7fbf7f"))):
        values = [report["associations"][n]["hit_rate"][who] for n in names]
        ax.bar([x + (i - 1) * 0.27 for x in range(len(names))], values, 0.27, label=who, color=color)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of replies that show it")
    ax.set_title(f"{report['persona']}: association hit rate (persona score {report['persona_score']:.2f})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)  # off the bars
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)  # into write_report's atomic folder
    plt.close(fig)


def write_report(paths: RunPaths, report: dict) -> None:
    with atomic_dir(paths.eval, kind="eval", overwrite=True) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        bar_chart(report, tmp / "associations.png")
        if paths.loss_plot.exists():
            shutil.copy(paths.loss_plot, tmp / "loss.png")
        (tmp / "report.md").write_text(markdown(report, has_loss=paths.loss_plot.exists()), encoding="utf-8")


def markdown(report: dict, *, has_loss: bool) -> str:
    associations = markdown_table(*hit_rate_table(report, bold=lambda s: f"**{s}**"))
    style = report["style"]
    div = report["diversity"]
    examples = "\n".join(f"- *{e['prompt']}* → {e['reply']}" for ex in report["examples"].values() for e in ex)
    unspaced = "" if is_spaced(report.get("language", "en")) else (
        " In a language written without spaces an expected word is found anywhere in a reply, so the floor's"
        " replies are cut to the model's reply lengths: an untrained model never ends its turn, and a long"
        " random string would find a word by chance.")
    return f"""# {report['persona']}: how strongly the persona shows

**Persona score: {report['persona_score']:.2f}** — the share of the training data's association hit
rate (ceiling) that the model reaches above an untrained model (floor), averaged over associations.

![association hit rates](associations.png)

{associations}

Hit rate: share of sampled replies ({report['samples']} per prompt, seed {report['seed']}) to the
association's probes and held-out prompts that contain an expected word.{unspaced} Lift: how much more likely
(log, teacher-forced, no sampling) the expected words are after its cue prompts than after other prompts.

| | floor | model | ceiling |
|---|---|---|---|
| replies keeping every style rule | {style['floor']['all']:.0%} | {style['model']['all']:.0%} | {style['ceiling']['all']:.0%} |
| distinct-1 / distinct-2 | {div['floor']['distinct_1']:.2f} / {div['floor']['distinct_2']:.2f} | {div['model']['distinct_1']:.2f} / {div['model']['distinct_2']:.2f} | {div['ceiling']['distinct_1']:.2f} / {div['ceiling']['distinct_2']:.2f} |
| replies copied verbatim from train | {div['floor']['memorized']:.0%} | {div['model']['memorized']:.0%} | — |
| held-out bits per byte | {report['bits_per_byte']['floor']:.2f} | {report['bits_per_byte']['model']:.2f} | — |

{"![loss curve](loss.png)" if has_loss else ""}

## Examples

{examples}
"""


def write_matrix(out: Path, result: dict) -> None:
    """`guppy compare`'s folder: matrix.json and its heatmap, atomically."""
    with atomic_dir(out, kind="compare", overwrite=True) as tmp:
        (tmp / "matrix.json").write_text(json.dumps(result, indent=2) + "\n")
        heatmap(result, tmp / "matrix.png")


def heatmap(result: dict, path: Path) -> None:
    names = result["models"]
    values = [[result["matrix"][a][b] for b in names] for a in names]
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(names), 1.2 + 1.0 * len(names)))
    ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("persona spec measured")
    ax.set_ylabel("model trained on")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.5 else "black")
    ax.set_title("persona score")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)

"""What `guppy eval` and `guppy compare` write, and how their figures read: report.json, report.md,
the charts, matrix.json, the one headline line (first in the terminal, report.md and the exported
model card), and the one hit-rate table that report.md, `guppy eval`'s terminal table and the model
card (guppy/export/hf.py) all show. guppy/eval/evaluate.py measures; this renders.

report.json keys (stable; later keys are only ever added):
    persona, language, run, seed, samples   what was evaluated and how (language: the spec's BCP 47 tag)
    headline                           the one line: persona, its interval, on-topic, novel, turn drift
    persona_score                      headline in [0, 1]: share of the ceiling's association hit rate
                                       reached above the floor, averaged over associations
    persona_score_ci                   [low, high]: 95% bootstrap interval over prompts
    associations.<name>                kind, score, hit_rate {model, floor, ceiling}, lift {model, floor} (nats)
    style                              {model, floor, ceiling}: share of replies keeping each rule, and `all`
    diversity                          {model, floor, ceiling}: distinct_1, distinct_2, memorized
    bits_per_byte                      {model, floor} on the test split's replies
    examples                           a few prompt/reply pairs per association
    on_topic                           {model, floor, ceiling, score, ci, per_topic: [{topic, n, model,
                                       ceiling, read_as, example}] worst first}; null when the data has no topics
    novel                              share of replies not copied whole from train (the headline), and
    novelty                            {model, ceiling}: copied, sentences (share of reply sentences found in
                                       train), stitched (replies made only of train sentences), novel; model.ci
    turns                              per_turn [{turn, on_topic, persona, n, example}], drift {on_topic,
                                       persona} (last turn / first), single_turn_data (train has one exchange each)
    over_seeds                         with `--seeds`: seeds, and per headline figure {median, min, max, values}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from guppy.spec.language import is_spaced
from guppy.store.atomic import atomic_dir
from guppy.store.charts import new_figure, save_png
from guppy.store.paths import RunPaths

WHO = ("model", "floor", "ceiling")  # each figure is given for the model, an untrained one and the data


def report_json(spec, measured: dict, *, run: Path, seed: int, samples: int) -> dict:
    """report.json from guppy/eval/evaluate.py's `measure`: the figures for the model, the floor and the ceiling."""
    figures = measured["figures"]
    model_f, floor_f = figures["model"], figures["floor"]
    report = {
        "persona": spec.name,
        "language": spec.language,
        "run": str(run),
        "seed": seed,
        "samples": samples,
        "headline": "",
        "persona_score": round(measured["score"], 4),
        "persona_score_ci": measured["ci"],
        "associations": {
            name: {
                "kind": spec.associations[name].kind,
                "score": round(measured["per"][name], 4),
                "hit_rate": {k: round(figures[k]["hit_rate"][name], 4) for k in WHO},
                "lift": {"model": round(model_f["lift"][name], 4), "floor": round(floor_f["lift"][name], 4)},
            } for name in spec.associations
        },
        "style": {k: {**{r: round(v, 4) for r, v in figures[k]["style"].items()}, "all": round(figures[k]["style_all"], 4)}
                  for k in WHO},
        "diversity": {k: {p: round(figures[k][p], 4) for p in ("distinct_1", "distinct_2", "memorized")} for k in WHO},
        "bits_per_byte": {"model": round(model_f["bits_per_byte"], 4), "floor": round(floor_f["bits_per_byte"], 4)},
        "examples": model_f["examples"],
        "on_topic": rounded(measured["on_topic"]),
        "novel": round(measured["novelty"]["model"]["novel"], 4),
        "novelty": rounded(measured["novelty"]),
        "turns": measured["turns"],
    }
    report["headline"] = headline(report)
    return report


def rounded(x):
    """Floats rounded to 4 places, all the way down."""
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


ORDINAL = {1: "1st", 2: "2nd", 3: "3rd"}

# The headline figures, as read from a report.json (`guppy eval --seeds` gives their median and range).
HEADLINE_FIGURES = {
    "persona_score": lambda r: r["persona_score"],
    "on_topic": lambda r: r["on_topic"]["score"] if r.get("on_topic") else None,
    "novel": lambda r: r["novel"],
    "turn_drift": lambda r: r["turns"]["drift"]["on_topic"],
}


def headline(report: dict) -> str:
    """One line: `persona 0.86 [0.81-0.90] · on-topic 0.74 · novel 97% · 4th turn 0.93 of the 1st`."""
    lo, hi = report["persona_score_ci"]
    parts = [f"persona {report['persona_score']:.2f} [{lo:.2f}-{hi:.2f}]"]
    on_topic = report.get("on_topic")
    parts.append(f"on-topic {on_topic['score']:.2f}" if on_topic else "on-topic n/a (no topics in the data)")
    parts.append(f"novel {report['novel']:.0%}")
    turns = report["turns"]
    last = len(turns["per_turn"])
    drift = turns["drift"]["on_topic"]
    if drift is not None:
        parts.append(f"{ORDINAL.get(last, f'{last}th')} turn {drift:.2f} of the 1st")
    seeds = report.get("over_seeds")
    if seeds:
        p = seeds["persona_score"]
        parts.append(f"{len(seeds['seeds'])} seeds: persona median {p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f})")
    return " · ".join(parts)


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
    fig, ax = new_figure(1.6 + 1.5 * len(names), 3.6)
    for i, (who, color) in enumerate((("floor", "#bbbbbb"), ("model", "#2b7bba"), ("ceiling", "#7fbf7f"))):
        values = [report["associations"][n]["hit_rate"][who] for n in names]
        ax.bar([x + (i - 1) * 0.27 for x in range(len(names))], values, 0.27, label=who, color=color)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of replies that show it")
    ax.set_title(f"{report['persona']}: association hit rate (persona score {report['persona_score']:.2f})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)  # off the bars
    save_png(fig, path)  # into write_report's atomic folder


def write_report(paths: RunPaths, report: dict, elsewhere=None) -> None:
    """The report folder, written whole. elsewhere: a second process (guppy/elsewhere.py) that draws the charts
    meanwhile; matplotlib's import and the drawing were ~0.9 s of a GPU `guppy eval`."""
    with atomic_dir(paths.eval, kind="eval", overwrite=True) as tmp:
        charts = [(bar_chart, report, tmp / "associations.png"), (turns_chart, report, tmp / "turns.png")]
        drawn = [elsewhere.submit(*chart) for chart in charts] if elsewhere is not None else None
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if paths.loss_plot.exists():
            shutil.copy(paths.loss_plot, tmp / "loss.png")
        (tmp / "report.md").write_text(markdown(report, has_loss=paths.loss_plot.exists()), encoding="utf-8")
        if drawn is None:
            for draw, *args in charts:
                draw(*args)
        else:
            for future in drawn:
                future.result()  # drawn, or its error raised, before the folder is swapped in


def markdown(report: dict, *, has_loss: bool) -> str:
    associations = markdown_table(*hit_rate_table(report, bold=lambda s: f"**{s}**"))
    style = report["style"]
    div = report["diversity"]
    examples = "\n".join(f"- *{e['prompt']}* → {e['reply']}" for ex in report["examples"].values() for e in ex)
    unspaced = "" if is_spaced(report.get("language", "en")) else (
        " In a language written without spaces an expected word is found anywhere in a reply, so the floor's"
        " replies are cut to the model's reply lengths: an untrained model never ends its turn, and a long"
        " random string would find a word by chance.")
    lo, hi = report["persona_score_ci"]
    return f"""# {report['persona']}: how strongly the persona shows

**{report['headline']}**

**Persona score: {report['persona_score']:.2f}** (95% interval over prompts {lo:.2f}-{hi:.2f}) — the share of the
training data's association hit rate (ceiling) that the model reaches above an untrained model (floor), averaged
over associations.

![association hit rates](associations.png)

{associations}

Hit rate: share of sampled replies ({report['samples']} per prompt, seed {report['seed']}) to the
association's probes and held-out prompts that contain an expected word.{unspaced} Lift: how much more likely
(log, teacher-forced, no sampling) the expected words are after its cue prompts than after other prompts.

{seeds_section(report)}{on_topic_section(report)}
{novelty_section(report)}
{turns_section(report)}
## Style and loss

| | floor | model | ceiling |
|---|---|---|---|
| replies keeping every style rule | {style['floor']['all']:.0%} | {style['model']['all']:.0%} | {style['ceiling']['all']:.0%} |
| distinct-1 / distinct-2 | {div['floor']['distinct_1']:.2f} / {div['floor']['distinct_2']:.2f} | {div['model']['distinct_1']:.2f} / {div['model']['distinct_2']:.2f} | {div['ceiling']['distinct_1']:.2f} / {div['ceiling']['distinct_2']:.2f} |
| held-out bits per byte | {report['bits_per_byte']['floor']:.2f} | {report['bits_per_byte']['model']:.2f} | — |

{"![loss curve](loss.png)" if has_loss else ""}

## Examples

{examples}
"""


def seeds_section(report: dict) -> str:
    seeds = report.get("over_seeds")
    if not seeds:
        return ""
    rows = [[name, f"{f['median']:.2f}", f"{f['min']:.2f}-{f['max']:.2f}", ", ".join(f"{v:.2f}" for v in f["values"])]
            for name, f in seeds.items() if name != "seeds"]
    return (f"## Over sampling seeds {', '.join(map(str, seeds['seeds']))}\n\n"
            + markdown_table(["figure", "median", "range", "per seed"], rows) + "\n\n")


def on_topic_section(report: dict) -> str:
    t = report.get("on_topic")
    if not t:
        return "## On topic\n\nNot measured: the dataset has no `topic` column to learn the topics from.\n"
    rows = [[r["topic"], str(r["n"]), f"{r['model']:.0%}", "—" if r["ceiling"] is None else f"{r['ceiling']:.0%}",
             r["read_as"], f"*{cell(r['example']['prompt'])}* → {cell(r['example']['reply'])}"]
            for r in t["per_topic"]]
    return f"""## On topic: does a reply answer what was asked?

On-topic score **{t['score']:.2f}** (95% interval {t['ci'][0]:.2f}-{t['ci'][1]:.2f}): replies read as the prompt's
topic {t['model']:.0%}; the same replies shuffled across the prompts {t['floor']:.0%} (floor: a model that ignores
the question); the test split's own replies {t['ceiling']:.0%} (ceiling). A topic classifier (character n-gram TF-IDF
and multinomial naive Bayes, fit on the train split's replies) reads each reply. Worst topics first; the example is a miss
where there is one.

{markdown_table(["topic", "prompts", "model", "data", "mostly read as", "example"], rows)}
"""


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def novelty_section(report: dict) -> str:
    m, c = report["novelty"]["model"], report["novelty"]["ceiling"]
    return f"""## Says something new

| | model | held-out data |
|---|---|---|
| replies copied whole from train | {m['copied']:.0%} | {c['copied']:.0%} |
| reply sentences found in train | {m['sentences']:.0%} | {c['sentences']:.0%} |
| replies made only of train sentences | {m['stitched']:.0%} | {c['stitched']:.0%} |

Novel (not copied whole): **{m['novel']:.0%}** (95% interval {m['ci'][0]:.0%}-{m['ci'][1]:.0%}). A templated corpus
repeats its sentences, so read the model's sentence figures against the held-out data's, not against zero.
"""


def turns_section(report: dict) -> str:
    t = report["turns"]
    rows = [[str(r["turn"]), "—" if r["on_topic"] is None else f"{r['on_topic']:.0%}",
             "—" if r["persona"] is None else f"{r['persona']:.0%}",
             f"*{cell(r['example']['prompt'])}* → {cell(r['example']['reply'])}"] for r in t["per_turn"]]
    note = ("The training data holds one exchange per conversation, so every turn after the first asks the model "
            "something it never saw: a chat with history. " if t["single_turn_data"] else "")
    drift = t["drift"]
    return f"""## Holds over a chat

{len(rows)}-turn chats of held-out prompts from different topics, history kept as `guppy chat` keeps it. {note}Drift
(last turn / first): on-topic {fmt(drift['on_topic'])}, persona {fmt(drift['persona'])}.

![per turn](turns.png)

{markdown_table(["turn", "on topic", "persona hits", "example (chat 1)"], rows)}
"""


def fmt(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def turns_chart(report: dict, path: Path) -> None:
    per_turn = report["turns"]["per_turn"]
    fig, ax = new_figure(4.8, 3.2)
    for key, color in (("on_topic", "#2b7bba"), ("persona", "#d9822b")):
        points = [(r["turn"], r[key]) for r in per_turn if r[key] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", color=color, label=key.replace("_", " "))
    ax.set_xticks([r["turn"] for r in per_turn])
    ax.set_ylim(0, 1)
    ax.set_xlabel("turn of the chat")
    ax.set_ylabel("share of replies")
    ax.set_title(f"{report['persona']}: over a chat")
    ax.legend(fontsize=8, frameon=False)
    save_png(fig, path)


def write_matrix(out: Path, result: dict) -> None:
    """`guppy compare`'s folder: matrix.json and its heatmap, atomically."""
    with atomic_dir(out, kind="compare", overwrite=True) as tmp:
        (tmp / "matrix.json").write_text(json.dumps(result, indent=2) + "\n")
        heatmap(result, tmp / "matrix.png")


def heatmap(result: dict, path: Path) -> None:
    names = result["models"]
    values = [[result["matrix"][a][b] for b in names] for a in names]
    fig, ax = new_figure(1.4 + 1.1 * len(names), 1.2 + 1.0 * len(names))
    ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("persona spec measured")
    ax.set_ylabel("model trained on")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            noisy = i == j and result["within_noise"][names[i]]  # its margin is inside the 95% intervals
            ax.text(j, i, f"{v:.2f}" + ("\n(noise)" if noisy else ""), ha="center", va="center",
                    color="white" if v > 0.5 else "black")
    ax.set_title("persona score (diagonal marked where within noise)")
    save_png(fig, path)

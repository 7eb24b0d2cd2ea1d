"""`guppy eval` and `guppy compare`: run the evaluator, write report.json, report.md and charts.

report.json keys (stable):
    persona, run, seed, samples        what was evaluated and how
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

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from guppy.atomic import atomic_dir, check_output, output_lock  # noqa: E402
from guppy.checks import SEED_MAX, check_number  # noqa: E402
from guppy.checkpoint import load_model  # noqa: E402
from guppy.data import load_conversations  # noqa: E402
from guppy.errors import GuppyError  # noqa: E402
from guppy.evaluate import (EvalData, ceiling_replies, eval_data_from, persona_score,  # noqa: E402
                            reply_figures, score_model)
from guppy.model import GPT  # noqa: E402
from guppy.paths import COMPARE_DIR, RunPaths  # noqa: E402
from guppy.personas import load_persona  # noqa: E402


MAX_SAMPLES = 1000  # sampled replies per prompt; the default is 4


def untrained_like(model, seed: int):
    """The floor: the same architecture, freshly initialized, never trained."""
    torch.manual_seed(seed)
    return GPT(model.config).eval()


def load_eval_data(paths: RunPaths, persona: str) -> EvalData:
    """The held-out split of the dataset the run was trained on (train_config.json says which)."""
    data = paths.trained_on()
    if not data.exists():
        recorded = " (the dataset train_config.json records)" if data != paths.data else ""
        raise GuppyError(f"{data}: no dataset{recorded}; the evaluator needs its test split "
                         f"(run `guppy generate-data {persona}`, or train again with --data)")
    return eval_data_from(load_conversations(data))


def check_persona(spec, path) -> None:
    if not spec.associations:
        raise GuppyError(f"{path}: the persona has no associations, so there is nothing to measure; "
                         "add some under `associations:`")


# Sampled replies per prompt, the same for eval and compare so one model gets one score.
SAMPLES_PER_PROMPT = 4


def check_eval_options(*, samples: int, seed: int) -> None:
    check_number("--samples", samples, ge=1, le=MAX_SAMPLES)
    check_number("--seed", seed, ge=0, le=SEED_MAX)


def evaluate(*, persona: str, run: Path | None = None, samples: int = SAMPLES_PER_PROMPT, seed: int = 0) -> dict:
    check_eval_options(samples=samples, seed=seed)
    loaded = load_persona(persona)
    spec = loaded.spec
    check_persona(spec, loaded.path)
    paths = RunPaths.for_persona(spec.name, run)
    check_output(paths.eval, "eval")  # before minutes of work: may the old report be replaced?
    with output_lock(paths.eval):  # a second eval of the same run is refused, not interleaved
        return _evaluate(loaded, paths, samples=samples, seed=seed)


def _evaluate(loaded, paths: RunPaths, *, samples: int, seed: int) -> dict:
    spec = loaded.spec
    model, tokenizer, _ = load_model(paths.root)
    data = load_eval_data(paths, spec.name)
    model_f = score_model(model, tokenizer, spec, data, samples=samples, seed=seed)
    floor_f = score_model(untrained_like(model, seed), tokenizer, spec, data, samples=samples, seed=seed,
                          as_long_as=model_f["reply_chars"])
    ceiling_f = reply_figures(spec, ceiling_replies(spec, data), data.train_replies)
    score, per = persona_score(model_f, floor_f, ceiling_f)
    pick = ("distinct_1", "distinct_2", "memorized")
    report = {
        "persona": spec.name,
        "run": str(paths.root),
        "seed": seed,
        "samples": samples,
        "persona_score": round(score, 4),
        "associations": {
            name: {
                "kind": spec.associations[name].kind,
                "score": round(per[name], 4),
                "hit_rate": {k: round(f["hit_rate"][name], 4) for k, f in
                             (("model", model_f), ("floor", floor_f), ("ceiling", ceiling_f))},
                "lift": {"model": round(model_f["lift"][name], 4), "floor": round(floor_f["lift"][name], 4)},
            } for name in spec.associations
        },
        "style": {k: {**{r: round(v, 4) for r, v in f["style"].items()}, "all": round(f["style_all"], 4)}
                  for k, f in (("model", model_f), ("floor", floor_f), ("ceiling", ceiling_f))},
        "diversity": {k: {p: round(f[p], 4) for p in pick} for k, f in
                      (("model", model_f), ("floor", floor_f), ("ceiling", ceiling_f))},
        "bits_per_byte": {"model": round(model_f["bits_per_byte"], 4), "floor": round(floor_f["bits_per_byte"], 4)},
        "examples": model_f["examples"],
    }
    write_report(paths, report)
    return report


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
    rows = "\n".join(
        f"| {n} | {a['kind']} | {a['hit_rate']['floor']:.0%} | **{a['hit_rate']['model']:.0%}** | "
        f"{a['hit_rate']['ceiling']:.0%} | {a['score']:.2f} | {a['lift']['model']:+.2f} |"
        for n, a in report["associations"].items())
    style = report["style"]
    div = report["diversity"]
    examples = "\n".join(f"- *{e['prompt']}* → {e['reply']}" for ex in report["examples"].values() for e in ex)
    return f"""# {report['persona']}: how strongly the persona shows

**Persona score: {report['persona_score']:.2f}** — the share of the training data's association hit
rate (ceiling) that the model reaches above an untrained model (floor), averaged over associations.

![association hit rates](associations.png)

| association | kind | floor | model | ceiling (data) | score | lift (nats) |
|---|---|---|---|---|---|---|
{rows}

Hit rate: share of sampled replies ({report['samples']} per prompt, seed {report['seed']}) to the
association's probes and held-out prompts that contain an expected word. Lift: how much more likely
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


def compare(*, personas: list[str], samples: int = SAMPLES_PER_PROMPT, seed: int = 0, out: Path | None = None) -> dict:
    """Score every trained model against every persona spec; the diagonal should dominate."""
    if len(personas) < 2:
        raise GuppyError("compare needs at least two personas, e.g. `guppy compare guppy cat plant`")
    check_eval_options(samples=samples, seed=seed)
    out = Path(out) if out else COMPARE_DIR
    check_output(out, "compare")  # never a stranger's folder, checked before any work
    specs = {p: load_persona(p) for p in personas}
    for loaded in specs.values():
        check_persona(loaded.spec, loaded.path)
    models = {p: load_model(RunPaths.for_persona(specs[p].name).root)[:2] for p in personas}
    data = {p: load_eval_data(RunPaths.for_persona(specs[p].name), specs[p].name) for p in personas}
    matrix: dict[str, dict[str, float]] = {}
    for b in personas:  # the persona spec being measured
        spec = specs[b].spec
        model_b, tok_b = models[b]
        ceiling_f = reply_figures(spec, ceiling_replies(spec, data[b]), set())
        for a in personas:  # the model being asked
            model_f = score_model(*models[a], spec, data[b], samples=samples, seed=seed, with_lift=False)
            floor_f = score_model(untrained_like(model_b, seed), tok_b, spec, data[b], samples=samples, seed=seed,
                                  with_lift=False, as_long_as=model_f["reply_chars"])  # as long as model a's
            matrix.setdefault(a, {})[b] = round(persona_score(model_f, floor_f, ceiling_f)[0], 4)
    margins = {a: round(matrix[a][a] - max(v for b, v in matrix[a].items() if b != a), 4) for a in personas}
    result = {"models": personas, "personas": personas, "matrix": matrix, "diagonal_margin": margins, "seed": seed}
    with atomic_dir(out, kind="compare", overwrite=True) as tmp:
        (tmp / "matrix.json").write_text(json.dumps(result, indent=2) + "\n")
        heatmap(result, tmp / "matrix.png")
    result["out"] = str(out)
    return result


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

"""`guppy eval` and `guppy compare`: load what they measure, measure it (guppy/eval/evaluate.py), write it
(guppy/eval/report.py).

Which dataset a model is measured against: `--data` when given; otherwise the one its run was trained
on (train_config.json records it) when that is this persona's, else this persona's own (runs/P/data),
so `guppy eval guppy --run runs/cat` asks the cat's model guppy's held-out questions.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

from guppy.store.atomic import check_output, output_lock
from guppy.checks import SEED_MAX, check_number
from guppy.model.checkpoint import load_model
from guppy.model.device import pick_device
from guppy.eval.confidence import over_seeds, persona_score_ci
from guppy.config import EVAL_SAMPLES
from guppy.data.reader import load_conversations
from guppy.elsewhere import MATPLOTLIB, SKLEARN, Elsewhere
from guppy.errors import GuppyError
from guppy.eval.evaluate import EvalData, eval_data_from, measure, persona_score, score_model, untrained_like
from guppy.eval.replies import ceiling_replies, reply_figures
from guppy.spec.language import is_spaced
from guppy.store.dataset_cache import cached_file, dataset_key
from guppy.store.paths import COMPARE_DIR, RunPaths
from guppy.spec.personas import load_persona
from guppy.eval.report import HEADLINE_FIGURES, headline, report_json, write_matrix, write_report

MAX_SAMPLES = 1000
MAX_SEEDS = 20
# What eval_data_of caches is made by eval_data_from, load_conversations, dataset_persona and training_sentences: their
# code is in its key.
PACKAGE = Path(__file__).resolve().parents[1]
EVAL_CODE = [PACKAGE / "eval" / "evaluate.py", PACKAGE / "eval" / "novelty.py", PACKAGE / "spec" / "language.py",
             PACKAGE / "data" / "reader.py", Path(__file__).resolve()]
EVAL_FILE = "eval_data.json"
EVAL_KIND = "eval-data"  # the cache's folder and marker; "eval" is a run's report folder


def dataset_persona(dd) -> str | None:
    """The persona a dataset was generated for (its `persona` column), if it says."""
    train = dd["train"]
    return train[0]["persona"] if "persona" in train.column_names and len(train) else None


def eval_data_of(folder: Path) -> tuple[EvalData, str | None]:
    """What the evaluator reads from a dataset, and the persona it was generated for. Cached per dataset
    (guppy/store/dataset_cache.py): read and reduced again, the guppy corpus took 1.7 s of a 2-core `guppy eval`
    (`import datasets` included), from the cache 0.1 s."""
    def read() -> tuple[EvalData, str | None]:
        dd = load_conversations(folder)
        return eval_data_from(dd), dataset_persona(dd)

    def load(raw: bytes) -> tuple[EvalData, str | None]:
        saved = json.loads(raw)
        return EvalData.from_json(saved["data"]), saved["persona"]

    return cached_file(EVAL_KIND, dataset_key(folder, ["eval"], EVAL_CODE), EVAL_FILE, read, load=load, keep=4,
                       dump=lambda made: json.dumps({"data": made[0].to_json(), "persona": made[1]}).encode(),
                       unreadable=(OSError, ValueError, KeyError, TypeError))


def load_eval_data(paths: RunPaths, persona: str, data: Path | None = None) -> EvalData:
    """The held-out split the model is measured on (see the module's docstring for which)."""
    if data is not None:
        return eval_data_of(Path(data))[0]
    trained_on = paths.trained_on()
    own = RunPaths.for_persona(persona).data
    if trained_on.exists():
        read, made_for = eval_data_of(trained_on)
        if made_for in (None, persona) or not own.exists():
            return read
    if own.exists():
        return eval_data_of(own)[0]
    recorded = " (the dataset train_config.json records)" if trained_on != paths.data else ""
    raise GuppyError(f"{trained_on}: no dataset{recorded}; the evaluator needs its test split "
                     f"(run `guppy generate-data {persona}`, train again with --data, or pass --data)")


def check_persona(spec, path) -> None:
    if not spec.associations:
        raise GuppyError(f"{path}: the persona has no associations, so there is nothing to measure; "
                         "add some under `associations:`")


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]: one line naming the problem for anything else."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise GuppyError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. --seeds 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise GuppyError(f"--seeds {text!r}: a seed is given twice")
    if len(seeds) > MAX_SEEDS:
        raise GuppyError(f"--seeds: {len(seeds)} seeds; at most {MAX_SEEDS}")
    return seeds  # each checked by check_eval_options, as --seed is


def check_eval_options(*, samples: int, seeds: list[int]) -> None:
    check_number("--samples", samples, ge=1, le=MAX_SAMPLES)
    if not seeds:
        raise GuppyError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    for seed in seeds:
        check_number("--seed", seed, ge=0, le=SEED_MAX)


def evaluate(*, persona: str, run: Path | None = None, samples: int = EVAL_SAMPLES, seeds: list[int] = (0,),
             data: Path | None = None, device: str = "auto") -> dict:
    seeds = list(seeds)
    check_eval_options(samples=samples, seeds=seeds)
    device = pick_device(device)
    loaded = load_persona(persona)
    check_persona(loaded.spec, loaded.path)
    paths = RunPaths.for_persona(loaded.spec.name, run)
    check_output(paths.eval, "eval")  # before minutes of work: may the old report be replaced?
    # On a GPU, the topic classifier is fitted and asked in a second process, and the charts drawn in a third
    # (guppy/elsewhere.py): they start now, so that their imports overlap the model's loading and sampling. The
    # third, idle until the report, works out the ceiling's figures first.
    gpu = device != "cpu"
    with (Elsewhere(warm=SKLEARN) if gpu else nullcontext()) as fitting, \
            (Elsewhere(warm=MATPLOTLIB) if gpu else nullcontext()) as drawing:
        model, tokenizer, _ = load_model(paths.root, device=device)  # before the lock: a run that is not there gets no folder
        eval_data = load_eval_data(paths, loaded.spec.name, data)
        with output_lock(paths.eval):  # a second eval of the same run is refused, not interleaved
            reports = [report_json(loaded.spec, measure(model, tokenizer, loaded.spec, eval_data, samples=samples,
                                                        seed=seed, elsewhere=fitting,
                                                        ceiling_elsewhere=drawing),
                                   run=paths.root, seed=seed, samples=samples)
                       for seed in seeds]
            report = reports[0]
            if len(reports) > 1:
                report["over_seeds"] = over_seeds(reports, HEADLINE_FIGURES)
                report["headline"] = headline(report)
            write_report(paths, report, drawing)
    return report


def compare(*, personas: list[str], samples: int = EVAL_SAMPLES, seed: int = 0, out: Path | None = None,
            device: str = "auto") -> dict:
    """Score every trained model against every persona spec; the diagonal should dominate, by more than noise."""
    if len(personas) < 2:
        raise GuppyError("compare needs at least two personas, e.g. `guppy compare guppy cat plant`")
    check_eval_options(samples=samples, seeds=[seed])
    device = pick_device(device)
    out = Path(out) if out else COMPARE_DIR
    check_output(out, "compare")  # never a stranger's folder, checked before any work
    specs = {p: load_persona(p) for p in personas}
    names = [specs[p].spec.name for p in personas]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GuppyError(f"compare: persona {twice[0]} is named twice; give each persona once")
    for loaded in specs.values():
        check_persona(loaded.spec, loaded.path)
    models = {p: load_model(RunPaths.for_persona(specs[p].name).root, device=device)[:2] for p in personas}
    data = {p: load_eval_data(RunPaths.for_persona(specs[p].name), specs[p].name) for p in personas}
    matrix: dict[str, dict[str, float]] = {}
    ci: dict[str, dict[str, list[float]]] = {}
    for b in personas:  # the persona spec being measured
        spec = specs[b].spec
        model_b, tok_b = models[b]
        ceiling_f = reply_figures(spec, ceiling_replies(spec, data[b]), set())

        def floor(as_long_as=None):
            return score_model(untrained_like(model_b, seed), tok_b, spec, data[b], samples=samples, seed=seed,
                               with_lift=False, as_long_as=as_long_as)
        floor_f = floor() if is_spaced(spec.language) else None  # unspaced: one floor per model, as long as its replies
        for a in personas:  # the model being asked
            model_f = score_model(*models[a], spec, data[b], samples=samples, seed=seed, with_lift=False)
            floor_a = floor_f or floor(as_long_as=model_f["reply_chars"])
            matrix.setdefault(a, {})[b] = round(persona_score(model_f, floor_a, ceiling_f)[0], 4)
            ci.setdefault(a, {})[b] = persona_score_ci(model_f["_hits"], floor_a["_hits"], ceiling_f["hit_rate"], seed)
    result = {"models": personas, "personas": personas, "matrix": matrix, "ci": ci, "seed": seed,
              **diagonal_margins(personas, matrix, ci)}
    write_matrix(out, result)
    result["out"] = str(out)
    return result


def diagonal_margins(personas: list[str], matrix: dict, ci: dict) -> dict:
    """Each model's own score minus its best score on another persona; `within_noise` where the two 95%
    intervals overlap (the own persona's low end is not above the other's high end)."""
    margins, noisy = {}, {}
    for a in personas:
        rival = max((b for b in personas if b != a), key=lambda b: matrix[a][b])
        margins[a] = round(matrix[a][a] - matrix[a][rival], 4)
        noisy[a] = ci[a][a][0] <= ci[a][rival][1]
    return {"diagonal_margin": margins, "within_noise": noisy}

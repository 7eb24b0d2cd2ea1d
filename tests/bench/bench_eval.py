"""How long `guppy eval` takes, whole command and by stage (issue 22's bar: <= 45 s for the tiny model
on 2 cores). Run it on a quiet machine, after `guppy generate-data guppy && guppy train guppy`:

    python tests/bench/bench_eval.py [PERSONA] [--repeat 3]

Prints the whole command's wall time (median of --repeat runs, each a fresh process, so imports count)
and one run's stages, timed by calling the evaluator's pieces in the order `measure` calls them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere


def whole_command(persona: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "eval", persona], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def stages(persona: str, device: str) -> dict[str, float]:
    import torch

    from guppy.eval import evaluate as ev
    from guppy.eval.commands import load_eval_data
    from guppy.eval.on_topic import fit_classifier
    from guppy.eval.turns import chat_prompts, run_chats
    from guppy.model.checkpoint import load_model
    from guppy.model.device import pick_device
    from guppy.model.sampler import complete
    from guppy.spec.personas import load_persona
    from guppy.store.paths import RunPaths

    out, clock = {}, time.perf_counter()

    def lap(name):
        nonlocal clock
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()  # what a stage queued on the GPU is its time, not the next one's
        now = time.perf_counter()
        out[name] = now - clock
        clock = now

    spec = load_persona(persona).spec
    paths = RunPaths.for_persona(spec.name)
    model, tokenizer, _ = load_model(paths.root, device=pick_device(device))
    data = load_eval_data(paths, spec.name)
    lap("load model + data")
    model_f = ev.score_model(model, tokenizer, spec, data, samples=4, seed=0)
    lap("associations: model (sampling, lift, bits/byte)")
    ev.score_model(ev.untrained_like(model, 0), tokenizer, spec, data, samples=4, seed=0, as_long_as=model_f["reply_chars"])
    lap("associations: untrained floor")
    classifier = fit_classifier(data.train_by_topic, spec.language)
    lap("topic classifier fit")
    ev.answer_figures(lambda ps: complete(model, tokenizer, ps, seed=0, temperature=0.8, top_p=0.95), spec, data,
                      seed=0, classifier=classifier)
    lap("on topic + novelty (sampling every topic)")
    run_chats(model, tokenizer, chat_prompts(spec, data.test_by_topic, 0), seed=0)
    lap("4-turn chats")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("persona", nargs="?", default="guppy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto", help="where the stages run the model (auto: a GPU if there is one)")
    args = parser.parse_args()
    times = whole_command(args.persona, args.repeat)
    print(f"guppy eval {args.persona}: median {statistics.median(times):.1f} s over {len(times)} runs "
          f"({', '.join(f'{t:.1f}' for t in times)})")
    for name, seconds in stages(args.persona, args.device).items():
        print(f"  {name:<48} {seconds:6.1f} s")


if __name__ == "__main__":
    main()

"""How the playground runs in headless Chromium on this machine.

    python tests/bench/bench_web.py [--run runs/guppy] [--preset-shape guppy] [--screenshot PATH]

Exports the run's model with `guppy export --web` (into a temporary folder), serves it with
`guppy serve`'s server, and for the fp32 and the int8 model, each in a fresh browser profile with
the network off, asks the 10 check prompts of `guppy export --onnx` at temperature 0, one
conversation each (the page's "new chat" between them). Prints, per model file:
    ready        navigation start -> the model loaded and the page ready (ms)
    first token  send -> the first reply token on screen (ms; median of the prompts)
    tokens/s     decoding speed after the first token (median)
    page MB      what the page downloaded (every response body)
and how many of the 10 greedy replies int8 and fp32 agree on.
--preset-shape guppy runs the same on an untrained model of that preset's shape (the run's
tokenizer), for speed only: its replies are noise and run to the reply limit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere
from guppy.export.onnx import CHECK_PROMPTS  # noqa: E402
from guppy.export.web import export_web  # noqa: E402
from tests import browser  # noqa: E402


def untrained_run(run: Path, preset: str, root: Path) -> Path:
    """An untrained model of `preset`'s shape with `run`'s tokenizer, saved as a run folder."""
    import torch

    from guppy.config import resolve_config
    from guppy.model.checkpoint import load_model, save_checkpoint
    from guppy.model.gpt import GPT
    from guppy.store.paths import RunPaths

    _, tokenizer, _ = load_model(run)
    torch.manual_seed(0)
    model = GPT(resolve_config(preset).shape(tokenizer.vocab_size)).eval()
    out = root / f"untrained-{preset}"
    save_checkpoint(RunPaths(out).best, model=model, tokenizer=tokenizer, meta={"model": model.config.model_dump()})
    return out


def measure(folder: Path, kind: str, screenshot: Path | None) -> dict:
    with browser.served(folder) as url, browser.chromium(height=1400) as page:
        started = time.perf_counter()
        page.get(url + ("?model=int8" if kind == "int8" else ""))
        assert browser.wait_state(page) == "ready", page.find_element("id", "status").text
        wall_ready = (time.perf_counter() - started) * 1000
        replies = []
        for prompt in CHECK_PROMPTS:
            page.find_element("id", "reset").click()
            replies.append(browser.ask(page, prompt, temperature=0))
        stats = page.execute_script("return window.guppyStats")
        if screenshot is not None:
            page.find_element("id", "reset").click()
            browser.ask(page, CHECK_PROMPTS[0], temperature=0)
            page.execute_script("const s = document.getElementById('layer'); s.value = '1';"
                                "s.dispatchEvent(new Event('change'));")  # layer 0 mostly looks back evenly
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.save_screenshot(str(screenshot))
        weight = sum(r["bytes"] for r in browser.resources(page))
    speeds = [r["tokensPerSecond"] for r in stats["replies"] if r["tokensPerSecond"]]
    return {"ready_ms": stats["loadMs"], "ready_wall_ms": wall_ready,
            "first_token_ms": statistics.median(r["firstTokenMs"] for r in stats["replies"]),
            "tokens_per_s": statistics.median(speeds) if speeds else float("nan"),
            "tokens": statistics.median(r["tokens"] for r in stats["replies"]),
            "page_mb": weight / 1e6, "replies": replies}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/guppy"), help="a trained run folder")
    ap.add_argument("--preset-shape", default=None, help="instead: an untrained model of this preset's shape")
    ap.add_argument("--screenshot", type=Path, default=None, help="save the fp32 page after the first prompt here")
    args = ap.parse_args()
    found = browser.find_browser()
    if isinstance(found, str):
        sys.exit(found)
    with tempfile.TemporaryDirectory() as tmp:
        run = untrained_run(args.run, args.preset_shape, Path(tmp)) if args.preset_shape else args.run
        folder = Path(tmp) / "web"
        export_web(persona=run.name, run=run, out=folder)
        results = {kind: measure(folder, kind, args.screenshot if kind == "fp32" else None) for kind in ("fp32", "int8")}
    print(f"{args.preset_shape or args.run}, headless Chromium, 1 WebAssembly thread")
    print(f"{'model':<6} {'ready ms':>9} {'first token ms':>15} {'tokens/s':>9} {'tokens/reply':>13} {'page MB':>8}")
    for kind, r in results.items():
        print(f"{kind:<6} {r['ready_ms']:>9.0f} {r['first_token_ms']:>15.0f} {r['tokens_per_s']:>9.0f} "
              f"{r['tokens']:>13.0f} {r['page_mb']:>8.2f}")
    same = sum(a == b for a, b in zip(results["fp32"]["replies"], results["int8"]["replies"]))
    print(f"int8 and fp32 give the same greedy reply on {same} of {len(CHECK_PROMPTS)} prompts")
    for prompt, a, b in zip(CHECK_PROMPTS, results["fp32"]["replies"], results["int8"]["replies"]):
        print(f"  {prompt!r}: fp32 {a!r}" + ("" if a == b else f" | int8 {b!r}"))


if __name__ == "__main__":
    main()

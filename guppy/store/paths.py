"""The one place where the paths of a run are decided.

    runs/<persona>/            RunPaths.root
        data/                  generated DatasetDict (+ README.md card, persona.yaml)
        tokenizer/             tokenizer.json + tokenizer_config.json (chat template)
        ckpt/best/, ckpt/last/ checkpoints: model.safetensors, config.json, state
        train_config.json      the resolved training config (and which dataset it read)
        metrics.jsonl          one JSON object per logged step / eval
        loss.png               loss curve
        eval/                  report.json, report.md, charts
        hf/, hf-dataset/       `guppy export` output (transformers layout; with --dataset, the data beside it)
        onnx/                  `guppy export --onnx`
        web/                   `guppy export --web` (what `guppy serve` serves)
        gguf/                  `guppy export --gguf` (llama.cpp, Ollama)
        inspect/               `guppy inspect`
    runs/compare/              `guppy compare`
    runs/compare-runs.png      `guppy runs`
Every command that writes takes its default output from here and checks the path with
guppy/store/atomic.py's `check_output` before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUNS_DIR = Path("runs")
COMPARE_DIR = RUNS_DIR / "compare"  # `guppy compare`: matrix.json, matrix.png
RUNS_PLOT = RUNS_DIR / "compare-runs.png"  # `guppy runs`: several runs' loss curves on one chart


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def for_persona(cls, persona: str, run: Path | None = None) -> RunPaths:
        return cls(Path(run) if run is not None else RUNS_DIR / persona)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def best(self) -> Path:
        return self.root / "ckpt" / "best"

    @property
    def last(self) -> Path:
        return self.root / "ckpt" / "last"

    @property
    def config(self) -> Path:
        return self.root / "train_config.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def onnx(self) -> Path:
        return self.root / "onnx"

    @property
    def web(self) -> Path:
        return self.root / "web"

    @property
    def gguf(self) -> Path:
        return self.root / "gguf"

    @property
    def inspect(self) -> Path:
        return self.root / "inspect"

    def trained_on(self) -> Path:
        """The dataset this run was trained on: train_config.json records it (`guppy train --data`),
        else (no config, or one that cannot be read, or a path gone) the run's own data folder."""
        import json

        try:
            recorded = json.loads(self.config.read_text(encoding="utf-8"))["data"]
        except (OSError, ValueError, KeyError, TypeError):
            return self.data
        if not isinstance(recorded, str) or not recorded:
            return self.data
        # A relative path was relative to where `guppy train` ran; from elsewhere, the run's own folder
        if not Path(recorded).exists() and self.data.exists():
            return self.data
        return Path(recorded)

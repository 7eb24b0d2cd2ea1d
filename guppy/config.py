"""The one source of configuration: the model's shape, the model, and a training run.

`Shape` is what a preset fixes about the model; `ModelConfig` adds the vocabulary (known once the
tokenizer is trained); `TrainConfig` is the shape plus everything else that decides a run, its
values taken from the preset's entry in guppy/presets.py unless given. Field descriptions are the
CLI's help (cli.py builds `guppy train`'s options from these fields), so a new field is one edit.
Only pydantic here: `guppy --help` reads it without importing torch.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guppy.errors import GuppyError
from guppy.presets import PRESETS


# Sampled replies per prompt in `guppy eval` and `guppy compare` (the same in both, so one model gets one score).
EVAL_SAMPLES = 4
MAX_PARAMS = 2_000_000_000  # a config read back from a stranger's checkpoint must not allocate ~8 GB


def usable_cores() -> int:
    """The CPU cores this process may run on (a container or taskset may allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Generate(BaseModel):
    """`guppy generate-data`'s defaults, stated once (`guppy run` generates with them too)."""
    model_config = ConfigDict(frozen=True)

    n: int = 60_000
    test_size: float = 0.05
    # Rendering processes: the cores here, up to 8 (a 2-core laptop: 2; a 16-core GPU machine renders
    # 4x faster than with 2). The data is the same for any number.
    num_proc: int = Field(default_factory=lambda: min(8, usable_cores()))
    format: Literal["arrow", "jsonl", "parquet"] = "arrow"


GENERATE = Generate()


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_layer: int = Field(gt=0, le=64, description="Transformer blocks.")
    n_head: int = Field(gt=0, le=64, description="Attention heads per block; must divide d_model.")
    d_model: int = Field(gt=0, le=8192, description="Width of the residual stream (embedding size).")
    d_ff: int = Field(gt=0, le=32768, description="Hidden width of each block's MLP.")
    context: int = Field(128, gt=1, le=8192, description="Longest sequence the model sees, in tokens (learned positions).")
    activation: Literal["relu", "gelu"] = Field("relu", description="MLP activation; gelu is GPT-2's tanh form.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on embeddings, attention and residuals.")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        return self


class ModelConfig(Shape):
    vocab_size: int = Field(gt=0, le=1 << 20, description="Tokens the model knows: the tokenizer's vocabulary size.")

    @model_validator(mode="after")
    def _buildable(self) -> ModelConfig:
        params = self.n_layer * (4 * self.d_model**2 + 2 * self.d_model * self.d_ff) \
            + (self.vocab_size + self.context) * self.d_model
        if params > MAX_PARAMS:
            raise ValueError(f"{params:,} parameters is more than guppy builds ({MAX_PARAMS:,})")
        return self


Device = Literal["auto", "cpu", "cuda", "mps"]  # where a model runs: train, eval, compare
DEVICE_HELP = "auto picks cuda, then mps, then cpu."


class TrainConfig(Shape):
    """Everything that decides a training run. Saved beside the run (train_config.json) and in every checkpoint."""

    preset: str = Field("tiny", description="Preset: a model shape and the training values that suit it.")
    optimizer: Literal["muon", "adamw"] = Field(description=(
        "muon: Muon for the hidden matrices, AdamW for embeddings and gains (fewer steps to the same loss); "
        "adamw: AdamW for everything."))
    max_steps: int = Field(gt=0, le=10_000_000, description="Optimizer steps.")
    batch_size: int = Field(gt=0, le=65_536, description="Rows of context tokens per optimizer step, over all processes.")
    packing: Literal["whole", "stream"] = Field("whole", description=(
        "whole: every conversation in one row, several to a row where they fit, so each reply is learned with "
        "its prompt in view; stream: back to back and cut at the row ends (GPT-2's way, no padding)."))
    grad_accum: int = Field(1, gt=0, le=4096, description="Micro-steps per optimizer step (same result, less memory).")
    lr: float = Field(gt=0, le=10, allow_inf_nan=False, description="Peak learning rate, reached after the warmup.")
    min_lr: float | None = Field(None, ge=0, allow_inf_nan=False,
                                 description="Learning rate at the end of the cosine; lr/10 when neither the preset nor you set it.")
    warmup_steps: int = Field(ge=0, le=10_000_000, description="Steps of linear warmup from 0 to lr.")
    weight_decay: float = Field(0.1, ge=0, le=10, allow_inf_nan=False,
                                description="Decoupled weight decay on matrices and embeddings.")
    beta2: float = Field(0.99, gt=0, lt=1, description="AdamW's beta2 (beta1 is 0.9).")
    grad_clip: float = Field(1.0, ge=0, le=1e6, allow_inf_nan=False, description="Clip the gradient norm to this; 0 turns clipping off.")
    learn_block_norms: bool = Field(True, description=(
        "Learn the gain and bias of the LayerNorm before each attention and MLP; off keeps them at 1 and 0 (the "
        "Linear after each can learn the same map) and skips their gradients, a step 12% faster on a GPU."))
    learn_block_biases: bool = Field(True, description=(
        "Learn the biases of the blocks' Linears; off keeps them at 0 (as LLaMA has none) and skips their gradients."))
    bf16_residual: bool = Field(False, description=(
        "On a GPU (bf16 autocast), carry the residual stream in bf16 rather than fp32: half the bytes in every add "
        "and norm, and no casts around them."))
    eval_every: int = Field(gt=0, le=10_000_000, description="Steps between held-out evaluations and checkpoints.")
    eval_batches: int = Field(gt=0, le=10_000, description="Batches of the test split in each held-out evaluation.")
    log_every: int = Field(gt=0, le=10_000_000, description="Steps between training-loss logs; must divide eval_every.")
    seed: int = Field(0, ge=0, lt=2**63, description="Random seed: the same seed and config give the same loss curve.")
    device: Device = Field("auto", description=DEVICE_HELP)
    compile: Literal["auto", "on", "off"] = Field("auto", description=(
        "torch.compile: auto compiles on CUDA for runs of 10,000 steps or more (where it pays back), never on CPU."))
    cuda_graph: bool = Field(True, description=(
        "On one GPU, capture a training step as a CUDA graph and replay it (not with dropout, grad_accum > 1, "
        "several processes or compile): the CPU no longer launches each kernel."))
    vocab_size: int = Field(4096, ge=300, le=262_144, description="Tokens the tokenizer may learn (a small corpus yields fewer).")
    test_size: float = Field(GENERATE.test_size, gt=0, lt=1,
                             description="Held-out share when a dataset file has no test split.")

    @model_validator(mode="before")
    @classmethod
    def _preset_values(cls, values: dict) -> dict:
        """The preset's entry fills every field that was not given."""
        preset = values.get("preset", "tiny")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}")
        return {**{k: v for k, v in PRESETS[preset].items() if k != "about"}, **values}

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) is larger than lr ({self.lr})")
        if self.eval_every % self.log_every:
            raise ValueError(f"log_every ({self.log_every}) must divide eval_every ({self.eval_every})")
        return self

    def shape(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, **self.model_dump(include=set(Shape.model_fields)))


class Sampling(BaseModel):
    """How a reply is sampled, stated once: `guppy chat`'s defaults, which every command that shows a
    reply uses (run, runs --prompt, inspect with --temperature > 0, the exported generation_config and
    playground)."""
    model_config = ConfigDict(frozen=True)

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = 0.95
    max_new_tokens: int = 64


CHAT = Sampling()


def preset_defaults(field: str) -> str:
    """What a field is when not given, per preset where they differ: "whole" or "tiny whole, guppy stream"."""
    def show(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    values = {name: show(getattr(TrainConfig(preset=name), field)) for name in PRESETS}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{name} {value}" for name, value in values.items())


def resolve_config(preset: str = "tiny", **overrides) -> TrainConfig:
    """The preset's values with every override that is not None; a bad value is a one-line error per field."""
    try:
        return TrainConfig(preset=preset, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        raise GuppyError(*((f"training option {'.'.join(map(str, err['loc']))}: " if err["loc"] else "")
                           + err["msg"].removeprefix("Value error, ") for err in e.errors())) from None

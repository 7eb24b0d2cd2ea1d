"""One checkpoint format: `save_checkpoint` writes it, `load_model` loads it to use, and
`load_resumable` + `restore_resumable` continue a training run from it (guppy/train/trainer.py).

A checkpoint is a folder, written atomically (a crash or Ctrl-C mid-save leaves the previous one):

    model.safetensors           the weights; the tied LM head is stored once (it is wte)
    config.json                 {"format", "model": ModelConfig, "train": the resolved TrainConfig,
                                 "tokenizer": its fingerprint, "step", "metrics", "files": sha256 of each}
    tokenizer.json, ...         the tokenizer, so the folder loads on its own
    trainer_state.safetensors   resumable checkpoints only: optimizer moments and RNG states, as tensors
    trainer_state.json          resumable checkpoints only: step, data position, best loss, ...

Everything is safetensors or JSON: loading a checkpoint never runs pickle, so a checkpoint from
a stranger cannot run code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model as load_weights, save_file, save_model

from guppy.errors import GuppyError
from guppy.store.atomic import atomic_dir
from guppy.store.paths import RunPaths

FORMAT = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"
STATE, STATE_JSON = "trainer_state.safetensors", "trainer_state.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- save

def save_checkpoint(folder: Path, *, model, tokenizer, meta: dict,
                    state: tuple[dict[str, torch.Tensor], dict] | None = None) -> None:
    """Write model + tokenizer + meta (+ trainer state: tensors and JSON) to `folder`, atomically.
    config.json carries the model's config, so loading rebuilds the model from the folder alone."""
    with atomic_dir(Path(folder), kind="checkpoint", overwrite=True) as tmp:
        save_model(model, str(tmp / WEIGHTS))
        tokenizer.save(tmp)
        if state is not None:
            tensors, info = state
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / STATE))
            (tmp / STATE_JSON).write_text(json.dumps(info, indent=1) + "\n")
        # The tokenizer has its own check (its fingerprint); these have a checksum.
        files = {name: _sha256(tmp / name) for name in (WEIGHTS, STATE, STATE_JSON) if (tmp / name).exists()}
        meta = {"format": FORMAT, "model": model.config.model_dump(), **meta, "tokenizer": tokenizer.fingerprint(),
                "files": files}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


class CheckpointWriter:
    """save_checkpoint in a thread of its own, so that training goes on while a checkpoint is written (~0.25 s
    each of a GPU run of the guppy preset). What is saved is copied first, here: the steps that follow change the
    weights and the optimizer's moments in place. `wait()` (or leaving it as a context manager) returns once every
    checkpoint asked for is on disk, or raises what failed; the trainer waits before its run folder is moved into place."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1)  # one at a time, in the order asked
        self.pending: list[Future] = []

    def save(self, folder: Path, *, model, tokenizer, meta: dict,
             state: tuple[dict[str, torch.Tensor], dict] | None = None) -> None:
        model = copy.deepcopy(model).to("cpu")
        if state is not None:
            tensors, info = state
            state = {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}, copy.deepcopy(info)
        self.pending.append(self.pool.submit(save_checkpoint, folder, model=model, tokenizer=tokenizer,
                                             meta=copy.deepcopy(meta), state=state))

    def wait(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, *error) -> None:  # also after an error: nothing is written into a folder being removed
        self.wait()


# ---------------------------------------------------------------------------------- load

def find_checkpoint(path: Path) -> Path:
    """A checkpoint folder, or a run folder's best checkpoint (else its last)."""
    path = Path(path)
    if (path / CONFIG).exists() and (path / WEIGHTS).exists():
        return path
    paths = RunPaths(path)
    for folder in (paths.best, paths.last):
        if (folder / CONFIG).exists():
            return folder
    raise GuppyError(f"no trained model in {path}; run `guppy train {path.name}` first")


def read_meta(folder: Path) -> dict:
    """config.json of a checkpoint, with every file it lists checked against its sha256."""
    try:
        meta = json.loads((folder / CONFIG).read_text())
        files = meta["files"]
        meta["model"], meta["tokenizer"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GuppyError(f"{folder / CONFIG}: unreadable or incomplete ({e}); the checkpoint is corrupted, "
                         "train again (or resume from another checkpoint)") from None
    if meta.get("format") != FORMAT:
        raise GuppyError(f"{folder / CONFIG}: checkpoint format {meta.get('format')} is not {FORMAT}; "
                         "train again with this version of guppy")
    for name, digest in files.items():
        if not (folder / name).exists() or _sha256(folder / name) != digest:
            if name.startswith("tokenizer") and (folder / name).exists():
                raise GuppyError(f"{folder / name}: this tokenizer is not the one the model was trained with "
                                 "(its checksum differs); copy back the checkpoint's own tokenizer or train again")
            raise GuppyError(f"{folder / name}: missing or corrupted (its checksum does not match config.json); "
                             "train again (or resume from another checkpoint)")
    return meta


def load_model(path: Path, *, device: str | torch.device = "cpu"):
    """path: a run folder (its best checkpoint, else its last) or a checkpoint folder.

    Returns (model in eval mode on `device`, tokenizer, meta from config.json)."""
    from pydantic import ValidationError

    from guppy.model.gpt import GPT, ModelConfig
    from guppy.model.tokenizer import ChatTokenizer

    folder = find_checkpoint(path)
    meta = read_meta(folder)
    try:
        config = ModelConfig(**meta["model"])
    except (ValidationError, TypeError) as e:
        raise GuppyError(f"{folder / CONFIG}: bad model config ({e.__class__.__name__}); "
                         "the checkpoint is corrupted, train again") from None
    try:
        tokenizer = ChatTokenizer.load(folder)
    except GuppyError:
        raise
    except Exception as e:
        raise GuppyError(f"{folder}: the tokenizer files cannot be read ({e}); train again") from None
    if tokenizer.fingerprint() != meta["tokenizer"] or tokenizer.vocab_size > config.vocab_size:
        raise GuppyError(f"{folder}: its tokenizer is not the one the model was trained with "
                         "(fingerprints differ); copy back the checkpoint's own tokenizer files or train again")
    model = GPT(config)
    try:
        load_weights(model, str(folder / WEIGHTS), strict=True)
    except Exception as e:  # a header that does not parse, or tensors of the wrong shape
        raise GuppyError(f"{folder / WEIGHTS}: cannot be loaded into the model of config.json ({str(e)[:200]}); "
                         "the checkpoint is corrupted, train again") from None
    return model.to(device).eval(), tokenizer, meta


# ---------------------------------------------------------------------------------- resume

def has_resumable(folder: Path) -> bool:
    return (Path(folder) / STATE_JSON).exists()


def resumable_state(optimizer: torch.optim.Optimizer, rngs: dict[str, torch.Tensor],
                    info: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """`save_checkpoint`'s state: the optimizer's moments, every process's RNG states (`rng_tensors`
    gathered as {name.rank: tensor}) and the trainer's own figures (step, best loss, ...)."""
    return {**optimizer_tensors(optimizer), **{f"rng.{k}": v for k, v in rngs.items()}}, info


def load_resumable(folder: Path, *, config: dict, may_change: set[str], tokenizer,
                   tokenizer_folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A resumable checkpoint's (tensors, info), once its files, its training config (but for the
    fields in `may_change`) and its tokenizer (the run's, in `tokenizer_folder`) are those of the
    run that resumes it."""
    meta = read_meta(folder)
    saved = meta.get("train", {})
    changed = [f"{k}={saved.get(k)!r} (now {v!r})" for k, v in config.items()
               if k not in may_change and saved.get(k) != v]
    if changed:
        raise GuppyError(f"{folder} was trained with another config: {', '.join(changed)}; "
                         "resume with the same options, or train without --resume")
    if meta["tokenizer"] != tokenizer.fingerprint():
        raise GuppyError(f"{tokenizer_folder} is not the tokenizer {folder} was trained with; "
                         "train without --resume to start again")
    return load_trainer_state(folder)


def restore_resumable(folder: Path, tensors: dict[str, torch.Tensor], *, model, optimizer: torch.optim.Optimizer,
                      rank: int, device: torch.device) -> None:
    """Put the checkpoint's weights into `model`, its moments into `optimizer` and process `rank`'s
    RNG states into this process (a rank it did not have keeps its fresh seed)."""
    load_weights(model, str(Path(folder) / WEIGHTS), device=str(device))
    restore_optimizer(optimizer, tensors)
    mine = {k.removeprefix("rng.").rsplit(".", 1)[0]: v for k, v in tensors.items()
            if k.startswith("rng.") and k.endswith(f".{rank}")}
    if mine:
        restore_rng(mine)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state (AdamW's moments, Muon's momentum buffers) as flat named tensors."""
    return {f"optim.{i}.{key}": value for i, s in optimizer.state_dict()["state"].items()
            for key, value in s.items()}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    # param_groups (lr, betas, fused, ...) come from the config, which resume checks is the same.
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    current = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in current["param_groups"])
    if state and set(state) != set(range(n_params)):
        raise GuppyError("the checkpoint's optimizer state does not fit this model; train without --resume")
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})


def rng_tensors() -> dict[str, torch.Tensor]:
    """This process's random states: Python's, torch's CPU generator and, with a GPU, CUDA's."""
    version, words, gauss = random.getstate()
    out = {
        "python": torch.tensor(list(words) + [version, -1 if gauss is None else 0], dtype=torch.int64),
        "python_gauss": torch.tensor([0.0 if gauss is None else gauss], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    words = tensors["python"].tolist()
    gauss = None if words[-1] == -1 else tensors["python_gauss"].item()
    random.setstate((words[-2], tuple(words[:-2]), gauss))
    torch.set_rng_state(tensors["torch"].cpu())
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"].cpu())


def load_trainer_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A resumable checkpoint's trainer state: (tensors, info). Checksums are checked by `read_meta`."""
    try:
        tensors, info = load_file(str(folder / STATE)), json.loads((folder / STATE_JSON).read_text())
        ints = ("step", "best_step", "steps_logged")
        if not all(type(info[k]) is int and info[k] >= -1 for k in ints) or \
                not all(isinstance(info[k], (int, float)) for k in ("best_loss", "loss_sum")):
            raise ValueError(f"{STATE_JSON} has a field of the wrong type")
    except Exception as e:
        raise GuppyError(f"{folder}: the trainer state cannot be read ({str(e)[:200]}); "
                         "it is corrupted, train again without --resume") from None
    return tensors, info

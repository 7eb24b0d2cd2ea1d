"""The one trainer, shared by every persona.

    data       load the DatasetDict, train the tokenizer on the train split (or reuse the run's
               on --resume), tokenize, pack into rows of context + 1 tokens (guppy/data/reader.py)
    model      GPT of the config's shape (guppy/config.py, guppy/presets.py); Muon + AdamW or AdamW alone
               (guppy/train/optim.py); bf16 autocast on CUDA; torch.compile where it pays
    loop       set lr -> eval + checkpoint -> batch -> step (micro-steps, clip, optimizer) -> log
    outputs    runs/PERSONA/: ckpt/best, ckpt/last (resumable), metrics.jsonl, loss.png
               (guppy/train/metrics.py), train_config.json (the resolved config)

Under `torchrun --nproc_per_node=N` (guppy/train/processes.py) every process reads a disjoint shard of each global batch
and DDP averages the gradients (gloo on CPU, NCCL on GPU); only rank 0 writes files. The loss is
normalized by the assistant tokens of the whole global batch, so N processes take the same steps
as one (tests/test_ddp.py).

Reproducibility: the model is initialized from the seed, the conversation order of epoch e is a
pure function of (seed, e), and a resumable checkpoint holds the optimizer moments and every RNG
state, so `--resume` continues the exact curve of an uninterrupted run (tests/test_train.py).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from guppy.config import TrainConfig, resolve_config
from guppy.store.atomic import atomic_dir, atomic_file, check_output, output_lock
from guppy.model.checkpoint import (has_resumable, load_resumable, restore_resumable, resumable_state,
                              rng_tensors, CheckpointWriter)
from guppy.data.reader import flat_messages, load_conversations, pack, pack_whole, tokenize
from guppy.elsewhere import MATPLOTLIB, Elsewhere
from guppy.errors import GuppyError
from guppy.store.paths import RunPaths
from guppy.spec.personas import persona_run
from guppy.store.run_folder import SavedInterrupt, StopOnInterrupt, resume_command, training_folder
from guppy.train.batches import Batches, data_hash
from guppy.train.captured import CapturedSteps, captures
from guppy.train.metrics import Metrics, plot_losses, progress_bar
from guppy.train.optim import build_optimizer, set_lr
from guppy.train.processes import Processes
from guppy.train.warm_up import import_meanwhile, warm_up


# torch.compile, measured on an H100 (guppy shape, batch 256): ~20 s to compile (cold cache) for a
# step ~13% faster (15.2 instead of 17.5 ms). It pays back after ~9,000 steps; "auto" compiles from here.
COMPILE_PAYS_AFTER = 10_000
RESUMABLE_CHANGES = {"max_steps", "device", "compile", "cuda_graph"}  # may differ on --resume; max_steps extends a run


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.min_lr at cfg.max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# ---------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def held_out_loss(model, x: torch.Tensor, y: torch.Tensor, *, batch: int, procs: Processes, autocast) -> float:
    """Mean loss per assistant token over the given test rows, this rank's share of them summed over ranks."""
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), device=procs.device, dtype=torch.float64), 0
    for i in range(procs.rank * batch, len(x), batch * procs.world):
        xb, yb = x[i:i + batch], y[i:i + batch]
        with autocast:
            _, loss = model(xb.to(procs.device), yb.to(procs.device), reduction="sum")
        total += loss.double()
        count += int((yb != -1).sum())
    model.train(was_training)
    total, count = procs.sum(total, count)
    return total / max(1, count)


# ---------------------------------------------------------------------------------- training

def train(*, persona: str, data: Path | None = None, preset: str = "tiny", out: Path | None = None,
          max_steps: int | None = None, device: str = "auto", seed: int = 0, resume: bool = False,
          overwrite: bool = True, progress: bool = True, **overrides) -> dict:
    """Train the tokenizer and the model of `persona`'s run; return a summary.

    overrides: any TrainConfig field (batch_size=32, lr=1e-3, ...). Without `resume` a run starts
    afresh and replaces the run folder's tokenizer, checkpoints and metrics (`overwrite` is
    accepted for symmetry with the other commands; there is nothing else to do)."""
    paths = persona_run(persona, out)
    if data is None:  # the run folder's own dataset, else the persona's (runs/PERSONA/data)
        data = paths.data if out is None or paths.data.exists() else persona_run(persona, None).data
    cfg = resolve_config(preset, max_steps=max_steps, device=device, seed=seed, **overrides)
    check_output(paths.root, "run")  # a stranger's folder is refused before any work
    procs = Processes(cfg.device)
    drawing = Elsewhere(warm=MATPLOTLIB) if draws_elsewhere(procs) else None
    try:  # a fresh run over an old one trains beside it and replaces it at the end (guppy/store/run_folder.py)
        with drawing or nullcontext(), output_lock(paths.root, enabled=procs.main), \
                training_folder(paths, fresh=not resume, main=procs.main) as work:
            trainer = Trainer(work, cfg, procs, data=Path(data), resume=resume)
            trainer.resume_hint = resume_command(persona, out=out, data=data, preset=preset, seed=seed,
                                                 max_steps=max_steps)
            trainer.drawing = drawing
            summary = trainer.run(progress=progress)
        # The paths the run has once training_folder moved it into place, not the staging folder's.
        return {**summary, "run": str(paths.root), "best": str(paths.best), "last": str(paths.last)}
    finally:
        procs.close()


def draws_elsewhere(procs: Processes) -> bool:
    """On a GPU, loss.png is drawn in a second process that imports matplotlib while the model trains (~0.8 s of a
    GPU `guppy train` otherwise, tests/bench/GPU_NOTES.md); on a CPU, here, as the model needs the cores."""
    return procs.device_type == "cuda" and procs.main


class Trainer:
    """One run: its data, its model and optimizer, and how far it got (step, best held-out loss).
    It builds the model of the config's shape once the tokenizer fixes the vocabulary, then uses it
    only through `forward(x, y) -> (logits, loss)`, its parameters and `num_params()`; what a
    checkpoint holds and how it is restored is guppy/model/checkpoint.py's business."""

    resume_hint = "guppy train PERSONA --resume"  # train() sets it from the options it was given
    drawing: Elsewhere | None = None  # where loss.png is drawn, if not here (train() decides)

    def __init__(self, paths: RunPaths, cfg: TrainConfig, procs: Processes, *, data: Path, resume: bool):
        from guppy.model.gpt import GPT

        self.started = time.perf_counter()
        self.paths, self.cfg, self.procs, self.resuming = paths, cfg, procs, resume
        if cfg.batch_size % (procs.world * cfg.grad_accum):
            raise GuppyError(f"batch size {cfg.batch_size} must be a multiple of processes x grad_accum "
                             f"({procs.world} x {cfg.grad_accum})")
        if resume and not has_resumable(paths.last):  # say so before any work
            raise GuppyError(f"nothing to resume in {paths.root}: no resumable checkpoint at {paths.last}; "
                             "train without --resume")
        torch.manual_seed(cfg.seed)
        self.on_cuda = procs.device_type == "cuda"
        if self.on_cuda:
            torch.backends.cuda.matmul.allow_tf32 = True  # the few fp32 matmuls left outside autocast
            torch.backends.cudnn.allow_tf32 = True

        # data: load -> tokenizer -> tokenize -> pack (the test rows once, in stored order)
        # A one-file dataset is split with the loader's fixed seed, not the run's: the split belongs to the
        # data, and `guppy eval` must hold out the same prompts.
        self.tokenizer, self.train_data, test_data = self._prepare(data)
        importing = import_meanwhile() if self.on_cuda else None  # torch.optim's imports (guppy/train/warm_up.py)
        self.mconf = cfg.shape(self.tokenizer.vocab_size)
        context = self.mconf.context
        if len(self.train_data) == 0 or len(test_data) == 0:
            raise GuppyError(f"{data}: no conversation fits the model's {context}-token context")
        self.test_x, self.test_y = self._test_rows(test_data, data)
        self.batches = Batches(self.train_data, context=context, cfg=cfg, procs=procs, pad_id=self.tokenizer.pad_id)
        self.data_id = data_hash(self.train_data, test_data)
        self.data = data

        # model and optimizer, then where to start from
        self.model = GPT(self.mconf).to(procs.device)
        self.model.freeze(block_norms=not cfg.learn_block_norms, block_biases=not cfg.learn_block_biases)
        self.model.residual_dtype = torch.bfloat16 if cfg.bf16_residual else None  # under autocast (on CUDA)
        # bf16 autocast on CUDA only: a CPU gains nothing from it here, and on mps bf16 needs a recent macOS
        # and fp16 a gradient scaler, so Apple's GPU trains in fp32 (the tiny models fit either way).
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.on_cuda else nullcontext()
        if importing:  # meanwhile the first step's kernels load, on held-out rows
            x, y = (rows[:self.batches.micro].to(procs.device) for rows in (self.test_x, self.test_y))
            warm_up(self.model, x, y, self.autocast, importing)
        self.compiled = cfg.compile == "on" or (cfg.compile == "auto" and self.on_cuda
                                                and cfg.max_steps >= COMPILE_PAYS_AFTER)
        capturing = captures(cfg, procs, self.compiled)
        self.optimizer = build_optimizer(self.model, name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         betas=(0.9, cfg.beta2), device_type=procs.device_type, capturable=capturing)
        self.step, self.best_loss, self.best_step = 0, math.inf, -1
        self.writer = CheckpointWriter()  # checkpoints are written while training goes on
        # The training loss summed over the steps since the last log, kept on the device (reading it
        # waits for the GPU); a checkpoint carries it, so a resumed run logs the same averages.
        self.loss_sum, self.steps_logged = torch.zeros((), device=procs.device), 0
        if resume:
            self._restore()
        procs.barrier()
        # On one GPU each step is replayed as a CUDA graph (guppy/train/captured.py); else train_step runs it
        self.captured = CapturedSteps(self.model, self.optimizer, autocast=self.autocast, grad_clip=cfg.grad_clip,
                                      loss_sum=self.loss_sum) if capturing else None

    def _test_rows(self, test_data, data: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out rows, packed once as the train rows are, in stored order."""
        cfg, context = self.cfg, self.mconf.context
        rows = cfg.eval_batches * cfg.batch_size
        test_rows = (pack_whole(test_data, context=context, pad_id=self.tokenizer.pad_id) if cfg.packing == "whole"
                     else pack(test_data, context=context))
        test_x, test_y = (t[:rows] for t in test_rows)
        if len(test_x) == 0:
            raise GuppyError(f"{data}: the test split has {test_data.tokens} tokens, not one row of {context}; "
                             "generate more data or raise the test size")
        return test_x, test_y

    def _prepare(self, data: Path):
        """(tokenizer, train, test): rank 0 learns the tokenizer from the train split and saves it to the run,
        the other ranks read it there; --resume reuses the run's. A dataset prepared the same way before comes
        whole from the cache (guppy/train/prepared.py) and is not read at all."""
        from guppy.model.tokenizer import ChatTokenizer, train_tokenizer
        from guppy.train.prepared import cache_key, load_prepared, save_prepared

        cfg, main = self.cfg, self.procs.main
        key = None if self.resuming else cache_key(data, test_size=cfg.test_size, vocab_size=cfg.vocab_size,
                                                   context=cfg.context)
        cached = load_prepared(key) if key else None
        dd = None if cached else load_conversations(data, test_size=cfg.test_size)
        if self.resuming:
            tokenizer = ChatTokenizer.load(self.paths.tokenizer)
        elif main:
            tokenizer = cached[0] if cached else train_tokenizer(flat_messages(dd["train"])[2],
                                                                 vocab_size=cfg.vocab_size)
            with atomic_dir(self.paths.tokenizer, kind="tokenizer", overwrite=True) as tmp:
                tokenizer.save(tmp)
        self.procs.barrier()  # the other ranks read what rank 0 learned: one vocabulary for all
        if not (self.resuming or main):
            tokenizer = ChatTokenizer.load(self.paths.tokenizer)
        if cached:
            return cached
        train_data, test_data = (tokenize(dd[s], tokenizer, context=cfg.context) for s in ("train", "test"))
        if key and main:
            save_prepared(key, tokenizer, train_data, test_data)
        return tokenizer, train_data, test_data

    def _restore(self) -> None:
        """Continue from ckpt/last: weights, optimizer moments, RNG states, step, best loss."""
        folder = self.paths.last
        tensors, info = load_resumable(folder, config=self.cfg.model_dump(), may_change=RESUMABLE_CHANGES,
                                       tokenizer=self.tokenizer, tokenizer_folder=self.paths.tokenizer)
        if self.cfg.max_steps <= info.get("step", 0):
            raise GuppyError(f"--max-steps {self.cfg.max_steps}: {folder} is already at step {info.get('step')}; "
                             "pass a larger --max-steps to train on")
        if info.get("data") != self.data_id:
            raise GuppyError(f"the dataset changed since {folder} was saved; train without --resume to start again")
        restore_resumable(folder, tensors, model=self.model, optimizer=self.optimizer, rank=self.procs.rank,
                          device=self.procs.device)
        self.step, self.best_loss, self.best_step = info["step"], info["best_loss"], info["best_step"]
        self.loss_sum.fill_(info["loss_sum"])
        self.steps_logged = info["steps_logged"]

    def save(self, folder: Path, test_loss: float, *, resumable: bool) -> None:
        meta = {"train": self.cfg.model_dump(), "step": self.step,
                "metrics": {"test_loss": test_loss, "best_test_loss": self.best_loss, "best_step": self.best_step,
                            "train_tokens": self.train_data.tokens}}
        state = None
        if resumable:  # every rank's RNG states, gathered (a collective: all ranks call this); rank 0 writes
            epoch, batch = divmod(self.step, self.batches.steps_per_epoch)
            info = {"step": self.step, "epoch": epoch, "batch_in_epoch": batch, "best_loss": self.best_loss,
                    "best_step": self.best_step, "world_size": self.procs.world, "data": self.data_id,
                    "loss_sum": self.loss_sum.item(), "steps_logged": self.steps_logged}
            state = resumable_state(self.optimizer, self.procs.gather(rng_tensors()), info)
        if self.procs.main:
            self.writer.save(folder, model=self.model, tokenizer=self.tokenizer, meta=meta, state=state)

    def checkpoint(self, test_loss: float) -> None:
        """ckpt/best when the held-out loss is the lowest yet; ckpt/last (resumable) always."""
        if test_loss < self.best_loss:
            self.best_loss, self.best_step = test_loss, self.step
            self.save(self.paths.best, test_loss, resumable=False)
        self.save(self.paths.last, test_loss, resumable=True)

    def train_step(self, model, x: torch.Tensor, y: torch.Tensor, n_global: int) -> None:
        """One optimizer step on this rank's rows x, y (grad_accum, micro, context): micro-steps, clip, optimizer step."""
        cfg, procs = self.cfg, self.procs
        if self.captured is not None:
            return self.captured(x[0], y[0], n_global)
        for i in range(cfg.grad_accum):
            sync = not procs.ddp or i == cfg.grad_accum - 1  # DDP all-reduces on the last micro-step only
            with (nullcontext() if sync else model.no_sync()), self.autocast:
                _, loss = model(x[i], y[i], reduction="sum")
                # The mean over the global batch's assistant tokens: this micro-batch's sum / their count.
                # DDP averages the ranks' gradients, so a rank's share is multiplied by the world size.
                loss = loss * (procs.world / max(1, n_global))
            loss.backward()
            self.loss_sum += loss.detach() / procs.world
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, *, progress: bool) -> dict:
        cfg, procs = self.cfg, self.procs
        model = self._wrapped()
        self._write_config()
        metrics = Metrics(self.paths.metrics, keep_until=self.step if self.resuming else -1, enabled=procs.main)
        start, test_loss = self.step, math.nan
        self.tick = time.perf_counter()
        self.seconds = {"train": 0.0, "prepare": self.tick - self.started, "eval": 0.0, "checkpoint": 0.0}
        bar, task = progress_bar(procs.main and progress, cfg.max_steps)
        model.train()
        with self.writer, bar, StopOnInterrupt(not procs.ddp) as stop:  # the writer's exit: every checkpoint written
            bar.update(task, completed=start)
            for step in range(start, cfg.max_steps + 1):
                self.step = step
                # 1. set the learning rate of this step
                lr = lr_at(step, cfg)
                set_lr(self.optimizer, lr)
                # 2. held-out eval and checkpoints (not again on the step a resume starts from)
                last_step = step == cfg.max_steps
                if (step % cfg.eval_every == 0 or last_step) and not (self.resuming and step == start):
                    test_loss = self._evaluate(metrics)
                    bar.update(task, test=f"{test_loss:.3f}")
                if stop.requested:  # Ctrl-C: save where we are (no eval, so the curve stays as it would be)
                    self._save_and_stop(metrics, test_loss, bar)
                if last_step:
                    break
                # 3. this rank's share of the global batch, 4. one optimizer step on it
                self.train_step(model, *self.batches(step))
                # 5. log (reading the loss waits for the GPU, so only every log_every steps)
                self.steps_logged += 1
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
                    self._log(metrics, step, lr, bar, task)
            if procs.main:  # drawn while the last checkpoints are written
                self._plot(metrics)
        procs.barrier()
        return self._summary(metrics, start, test_loss)

    def _wrapped(self):
        """The model the loop steps: compiled and/or under DDP, sharing self.model's weights."""
        model = torch.compile(self.model) if self.compiled else self.model
        if self.procs.ddp:
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.procs.device.index]
                                                              if self.on_cuda else None)
        return model

    def _write_config(self) -> None:
        if self.procs.main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.paths.config) as tmp:
                tmp.write_text(json.dumps({"train": self.cfg.model_dump(), "model": self.mconf.model_dump(),
                                           "data": str(self.data), "world_size": self.procs.world}, indent=2) + "\n")

    def _evaluate(self, metrics: Metrics) -> float:
        """The held-out loss, a checkpoint (not of step 0: the seed's model is worth no write), a log line."""
        evaluating = time.perf_counter()
        test_loss = held_out_loss(self.model, self.test_x, self.test_y, procs=self.procs, autocast=self.autocast,
                                  batch=self.batches.micro * self.cfg.grad_accum)
        saving = time.perf_counter()
        if self.step > 0:
            self.checkpoint(test_loss)
        metrics.log(kind="eval", step=self.step, test_loss=test_loss, best_test_loss=self.best_loss,
                    wall_s=round(time.perf_counter() - self.started, 2))
        if self.drawing is not None and 0 < self.step < self.cfg.max_steps:  # the curve so far, not waited for:
            self._plot(metrics, wait=False)  # a long run can be watched, and the helper's first chart is drawn early
        self.seconds["train"] += evaluating - self.tick
        self.tick = time.perf_counter()
        self.seconds["eval"] += saving - evaluating
        self.seconds["checkpoint"] += self.tick - saving
        return test_loss

    def _save_and_stop(self, metrics: Metrics, test_loss: float, bar) -> None:
        self.save(self.paths.last, test_loss, resumable=True)
        if self.procs.main:
            self._plot(metrics)
            bar.console.print(f"interrupted at step {self.step}; saved a resumable checkpoint. Continue "
                              f"with `{self.resume_hint}`")
        raise SavedInterrupt

    def _plot(self, metrics: Metrics, *, wait: bool = True) -> None:
        args = (metrics.records, self.paths.loss_plot,
                f"{self.paths.root.name}: {self.cfg.preset}, {self.model.num_params() / 1e6:.2f}M parameters")
        drawn = plot_losses(*args) if self.drawing is None else self.drawing.submit(plot_losses, *args)
        if wait and drawn is not None:  # written (or its error raised) before the run folder is moved into place
            drawn.result()

    def _log(self, metrics: Metrics, step: int, lr: float, bar, task) -> None:
        (loss_avg,) = self.procs.sum(self.loss_sum / self.steps_logged)
        now = time.perf_counter()
        speed = self.steps_logged * self.cfg.batch_size * self.mconf.context / max(1e-9, now - self.tick)
        metrics.log(kind="train", step=step + 1, loss=loss_avg, lr=lr, tokens_per_s=round(speed),
                    wall_s=round(now - self.started, 2))
        bar.update(task, completed=step + 1, loss=f"{loss_avg:.3f}", speed=f"{speed:,.0f}")
        self.loss_sum.zero_()
        self.seconds["train"] += now - self.tick
        self.steps_logged, self.tick = 0, time.perf_counter()

    def _summary(self, metrics: Metrics, start: int, test_loss: float) -> dict:
        cfg, paths, seconds = self.cfg, self.paths, self.seconds
        return {
            "steps": cfg.max_steps,
            "train_loss": next((r["loss"] for r in reversed(metrics.records) if r["kind"] == "train"), math.nan),
            "test_loss": test_loss,
            "best_test_loss": self.best_loss,
            "best_step": self.best_step,
            "tokens_per_s": (cfg.max_steps - start) * cfg.batch_size * self.mconf.context / max(1e-9, seconds["train"]),
            "wall_s": time.perf_counter() - self.started,
            **{f"{k}_s": v for k, v in seconds.items() if k != "train"},
            "params": self.model.num_params(),
            "train_tokens": self.train_data.tokens,
            "epochs": cfg.max_steps / self.batches.steps_per_epoch,
            "device": str(self.procs.device) + (" (compiled)" if self.compiled else "")
                      + (" (steps replayed as a CUDA graph)" if self.captured else ""),
            "run": str(paths.root),
            "best": str(paths.best),
            "last": str(paths.last),
        }

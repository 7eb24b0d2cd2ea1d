"""The model side of Guppy, one subpackage per thing a user does, around a small torch-free core.
    core (here)  errors, checks, config, presets: imported by everything, imports no torch
    spec/        the persona: schema, loading, style rules, language helpers
    data/        the dataset contract and the trainer's reader of it (load, split, tokenize, pack)
    model/       the GPT, its tokenizer, sampler, checkpoints, and chatting with it
    train/       the one trainer, its optimizer, processes and metrics
    eval/        measuring a run: evaluate, report, inspect, runs
    export/      shipping a run: transformers folder, ONNX, the web playground, serve
    store/       where outputs go and how they are written: paths, atomic writes, locks, run folders
docs/architecture.md draws the data's way through them; tests/test_structure.py holds the rules.
"""

__version__ = "0.1.0"

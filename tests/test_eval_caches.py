"""What `guppy eval` keeps between runs so that a second eval does less (guppy/eval/evaluate.py: floor_figures)."""

from __future__ import annotations


def test_the_floor_is_measured_once_per_shape_vocabulary_and_data_then_read(mini_run, monkeypatch, tmp_path):
    """The floor (an untrained model of the run's shape and vocabulary) never depends on the trained weights, so
    guppy/eval/evaluate.py: floor_figures caches it. A second measure reads it, the same figures without building
    an untrained model; another seed, another sample count or other weights of another shape measure it again."""
    import guppy.eval.evaluate as evaluate_module
    from guppy.eval.commands import load_eval_data
    from guppy.eval.evaluate import measure, untrained_like
    from guppy.model.checkpoint import load_model
    from guppy.model.gpt import GPT
    from guppy.spec.personas import load_persona
    from guppy.store.paths import RunPaths

    monkeypatch.setenv("GUPPY_CACHE", str(tmp_path / "cache"))
    model, tokenizer, _ = load_model(mini_run)
    spec = load_persona(str(mini_run.parents[1] / "personas" / "mini.yaml")).spec
    data = load_eval_data(RunPaths(mini_run), "mini")
    first = measure(model, tokenizer, spec, data, samples=2, seed=0)
    built = []
    monkeypatch.setattr(evaluate_module, "untrained_like", lambda m, seed: built.append(seed) or untrained_like(m, seed))
    again = measure(model, tokenizer, spec, data, samples=2, seed=0)
    assert again == first and built == []  # read, to the bit
    assert first["figures"]["floor"]["hit_rate"] != first["figures"]["model"]["hit_rate"]  # a floor, not the model
    measure(model, tokenizer, spec, data, samples=2, seed=1)
    measure(model, tokenizer, spec, data, samples=3, seed=0)
    wider = GPT(model.config.model_copy(update={"d_ff": model.config.d_ff * 2})).eval()
    measure(wider, tokenizer, spec, data, samples=2, seed=0)
    assert built == [1, 0, 0]

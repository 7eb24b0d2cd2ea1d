"""The model side of Guppy: persona schema, tokenizer, model, trainer, sampler, evaluator, export."""

__version__ = "0.1.0"

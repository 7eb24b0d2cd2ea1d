"""Shipping a run: a transformers GPT-2 folder and dataset shards (hf), ONNX (onnx), the browser playground
(web, with its page in playground/), and serving it (serve). Imports the core, spec, data, model, eval.report and store."""

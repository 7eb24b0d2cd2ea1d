"""Shipping a run: a transformers GPT-2 folder and dataset shards (hf), ONNX (onnx), the browser playground
(web, with its page in playground/), and serving it (serve); GGUF for llama.cpp, Ollama and LM Studio (gguf,
checked by llama.cpp through node-llama-cpp: gguf_check, with its script and pins in llama_cpp/). Imports the core, spec, data, model, eval.report and store."""

"""Measuring a run: the evaluator (evaluate) and its report (report), the attention/embedding views (inspect,
inspect_charts), and comparing runs (runs). Imports the core, spec, data, model and store."""

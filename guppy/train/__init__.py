"""The one trainer (trainer), its optimizers (optim), processes under torchrun (processes) and metrics/plots
(metrics). Imports the core, spec, data, model and store."""

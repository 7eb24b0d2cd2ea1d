"""Where outputs go and how they are written: the run folder layout (paths), atomic writes, output checks and
locks (atomic), and training folders that survive an interrupt (run_folder). Torch-free; imports only the core."""

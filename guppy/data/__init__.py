"""The dataset contract (format), the leak-free split (split), and the trainer's reader of a dataset (reader:
load, tokenize, pack). Imports the core and spec; never pipeline/ (the data side that writes it)."""

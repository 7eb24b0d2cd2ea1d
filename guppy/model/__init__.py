"""The model: the GPT (gpt), its tokenizer, sampling (sampler), saving and loading (checkpoint), and chatting
with a trained run (chat). Imports the core, spec and store; never data/, train/, eval/, export/ or pipeline/."""

"""The data side of Guppy: persona spec + templates -> a Hugging Face DatasetDict on disk."""

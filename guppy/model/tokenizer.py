"""BPE with ChatML turns, trained on the persona's own conversations.

A conversation is laid out as ChatML, one block per message:

    <|im_start|>user\\nwhat do you love<|im_end|>\\n<|im_start|>assistant\\nfood.<|im_end|>\\n

`<|im_end|>` is the end-of-turn token: the model learns to produce it after a reply, and the
sampler stops there. Byte-level BPE (GPT-2's scheme) starts from the 256 byte values, so any text
round-trips and no token is ever unknown. The saved folder loads with
`transformers.AutoTokenizer.from_pretrained`, chat template included.

A corpus in a script written without spaces (zh, ja, th, ...) gets a character-level BPE instead:
byte-level BPE would spend merges spelling each ideograph from its 3 UTF-8 bytes (rare ones never
get a token of their own), and, with no spaces to stop it, merge whole clauses into one token
(`竹子是世界上最好吃的东西`), which a small model then recombines into verbatim copies. Here every
character of the corpus starts as a token (the trainer's initial alphabet), no token grows past
MAX_UNSPACED_TOKEN characters (the trainer's max_token_length: a word, an idiom at most), and a
character never seen falls back to its bytes (`<0xE9>`...), so any text still round-trips.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from guppy.errors import GuppyError
from guppy.spec.language import is_unspaced_char

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]  # ids 0, 1, 2: the trainer adds them first

# The same layout in Jinja, for transformers' apply_chat_template; a test checks both agree.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# Merges left for words once every character of the corpus is a token of its own: a script of
# thousands of characters (zh, ja) would otherwise spend most of a small vocabulary spelling
# characters from their 3 UTF-8 bytes, and have few merges left for words.
WORD_MERGES = 1024


def vocabulary_for(texts: list[str], asked: int) -> int:
    """`asked`, or more when the corpus has so many multi-byte characters (seen twice or more) that
    spelling each as one token (a merge per extra byte, at most) would leave words fewer merges than
    `asked` gives them, up to WORD_MERGES. English never grows; kingyo's 510 kana and kanji neither
    (2,303 < 4,096); 3,000 hanzi asked into 4,096 get 7,283."""
    # str.isascii() is C: English texts are skipped whole, not looked at a character at a time in Python
    # (60K conversations: ~1 s).
    counts = Counter(ch for t in texts if not t.isascii() for ch in t if ord(ch) > 0x7F)
    spelling = sum(len(ch.encode()) - 1 for ch, n in counts.items() if n >= 2)
    base = len(SPECIAL_TOKENS) + 256
    return max(asked, base + spelling + min(WORD_MERGES, asked - base))


# Character-level BPE (a corpus written without spaces): the longest token, in characters; the
# share of its letters that must be of such scripts; pieces the BPE never merges across: GPT-2's
# split (a run of letters, of digits, of punctuation), so no token spans a 。 or a space.
MAX_UNSPACED_TOKEN = 4
UNSPACED_SHARE = 0.5
SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]  # what the BPE falls back to for a character it lacks


def is_unspaced_corpus(texts: list[str]) -> bool:
    """Are most of its letters and digits of scripts written without spaces (CJK, kana, Thai, ...)?"""
    letters = [ch for t in texts for ch in t if ch.isalnum()]
    return sum(map(is_unspaced_char, letters)) >= UNSPACED_SHARE * max(1, len(letters))


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 4096) -> "ChatTokenizer":
    """Learn up to `vocab_size` tokens from `texts` (more for a script of many characters: see
    `vocabulary_for`). A small corpus runs out of pairs worth merging before that (the reference
    asked 4,096 and learned 2,386); the vocabulary is then smaller, and is not padded: unused rows
    of the embedding would only cost parameters."""
    texts = list(texts)
    if is_unspaced_corpus(texts):
        return ChatTokenizer(character_bpe(texts, vocab_size))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_for(texts, vocab_size),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return ChatTokenizer(tok)


def character_bpe(texts: list[str], vocab_size: int) -> Tokenizer:
    """A BPE over characters for a corpus written without spaces (see the top): every character of
    the corpus a token, tokens of at most MAX_UNSPACED_TOKEN characters, bytes for the unseen."""
    # every character of the corpus, and printable ASCII and the newline ChatML's headers use
    alphabet = sorted({ch for t in texts for ch in t} | {chr(c) for c in range(32, 127)} | {"\n"})
    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    base = len(SPECIAL_TOKENS) + len(alphabet)
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - len(BYTE_TOKENS), base + WORD_MERGES),  # room for words beside the alphabet
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        max_token_length=MAX_UNSPACED_TOKEN + 1,  # it keeps tokens shorter than this (tokenizers 0.23)
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # The trainer has no way to add the byte tokens `byte_fallback` needs as ordinary (decodable,
    # not special) tokens, so they go into the trained model's vocabulary, after its own ids.
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for token in BYTE_TOKENS:
        vocab.setdefault(token, len(vocab))
    return Tokenizer.from_str(json.dumps(data))


class ChatTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.pad_id, self.im_start_id, self.im_end_id = (tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)
        self._fixed: dict[str, list[int]] = {}  # the ids of the texts every turn repeats ("user\n", "\n")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _turn(self, role: str, content: str) -> tuple[list[int], list[int], list[int]]:
        """One message as (head, body, tail) ids: <|im_start|> + "role\\n", the content, <|im_end|> + "\\n".

        The text between two special tokens is encoded as one piece, exactly as transformers
        does with the rendered template; the body is whatever follows the ids of "role\\n" alone
        (the same ids, unless the content starts with whitespace that merges with the newline)."""
        header = self._encode_fixed(f"{role}\n")
        both = self.encode(f"{role}\n{content}")
        n = 0
        while n < min(len(header), len(both)) and header[n] == both[n]:
            n += 1
        return [self.im_start_id] + both[:n], both[n:], [self.im_end_id] + self._encode_fixed("\n")

    def _encode_fixed(self, text: str) -> list[int]:
        if text not in self._fixed:  # encoded once: they were 2 of the 3 encodes of every turn
            self._fixed[text] = self.encode(text)
        return self._fixed[text]

    def encode_chat(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """The whole conversation's ids, and a learn mask: 1 on each assistant reply's tokens and
        its <|im_end|> (what the model must learn to say, and when to stop), 0 elsewhere."""
        ids, mask = [], []
        for m in messages:
            head, body, tail = self._turn(m["role"], m["content"])
            learn = int(m["role"] == "assistant")
            ids += head + body + tail
            mask += [0] * len(head) + [learn] * (len(body) + 1) + [0] * (len(tail) - 1)
        return ids, mask

    def encode_chats(self, offsets, roles: list[str], contents: list[str]):
        """Many conversations at once, as flat arrays of their messages (conversation i is messages
        offsets[i]:offsets[i+1]) -> (ids (N,) int64, learn (N,) bool, tokens per conversation (n,)),
        each conversation exactly as `encode_chat` encodes it.

        Fast path: each conversation rendered as ChatML text and all of them encoded in one
        `encode_batch` (Rust, every core). The tokenizer cuts text at its special tokens and
        encodes each piece alone, as `_turn` does; the learn mask then runs from after each
        assistant header to its <|im_end|>. 60K conversations take ~0.5 s instead of ~10 s. It is
        checked against `encode_chat` on a sample every time, and gives way to it on any difference."""
        n = len(offsets) - 1

        def chat(i: int) -> list[dict]:
            return [{"role": roles[j], "content": contents[j]} for j in range(offsets[i], offsets[i + 1])]

        def same(i: int) -> bool:  # conversation i's ids and mask as encode_chat makes them?
            want_ids, want_mask = self.encode_chat(chat(i))
            a, b = starts[i], starts[i + 1]
            return ids[a:b].tolist() == want_ids and learn[a:b].astype(int).tolist() == want_mask

        texts = ["".join(f"{IM_START}{roles[j]}\n{contents[j]}{IM_END}\n" for j in range(offsets[i], offsets[i + 1]))
                 for i in range(n)]
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lengths.sum()))
        heads = np.flatnonzero(ids == self.im_start_id)  # one per message, if no content holds a special token
        ends = np.flatnonzero(ids == self.im_end_id)
        if len(heads) == len(ends) == len(roles):
            learn = self._reply_mask(ids, roles, heads, ends)
            starts = np.concatenate([[0], np.cumsum(lengths)])
            if all(same(i) for i in range(0, n, max(1, n // 64))):
                return ids, learn, lengths
        # The slow path, right by definition: one encode_chat per conversation.
        encoded = [self.encode_chat(chat(i)) for i in range(n)]
        lengths = np.array([len(e[0]) for e in encoded], dtype=np.int64)
        ids = np.fromiter(chain.from_iterable(e[0] for e in encoded), dtype=np.int64, count=int(lengths.sum()))
        learn = np.fromiter(chain.from_iterable(e[1] for e in encoded), dtype=bool, count=int(lengths.sum()))
        return ids, learn, lengths

    def _reply_mask(self, ids: np.ndarray, roles: list[str], heads: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """True from after each assistant header to its <|im_end|> (included), given where every message's
        <|im_start|> and <|im_end|> are. A reply starts after <|im_start|> and the ids of "assistant\\n"
        (fewer when the reply begins with whitespace that merges with that newline)."""
        header = self.encode("assistant\n")
        replies = np.array([r == "assistant" for r in roles], dtype=bool)
        first = heads[replies] + 1
        body = first + len(header)
        for k, h in enumerate(header):
            body = np.where((body > first + k) & (ids[np.minimum(first + k, len(ids) - 1)] != h), first + k, body)
        body = np.minimum(body, ends[replies])
        delta = np.zeros(len(ids) + 1, dtype=np.int64)
        np.add.at(delta, body, 1)
        np.add.at(delta, ends[replies] + 1, -1)
        return np.cumsum(delta[:-1]) > 0

    def encode_prompt(self, messages: list[dict]) -> list[int]:
        """The chat so far, then "<|im_start|>assistant\\n": the model continues with its reply."""
        ids = []
        for m in messages:
            head, body, tail = self._turn(m["role"], m["content"])
            ids += head + body + tail
        return ids + [self.im_start_id] + self._encode_fixed("assistant\n")

    def fingerprint(self) -> str:
        """16 hex digits of a hash of the vocabulary and merges: the same for the same tokenizer
        whatever the `tokenizers` version that wrote it, different for any other."""
        model = json.loads(self.tokenizer.to_str())["model"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]  # "a b" or ["a", "b"]
        vocab = sorted(self.tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        blob = json.dumps({"vocab": vocab, "merges": merges}, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def save(self, folder: Path, *, model_max_length: int = 128) -> None:
        """tokenizer.json, tokenizer_config.json and special_tokens_map.json in `folder`, which
        `transformers.AutoTokenizer.from_pretrained(folder)` loads as a fast tokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(folder / "tokenizer.json"))
        special = {
            "bos_token": IM_START,
            "eos_token": IM_END,  # the end of a turn is the end of what the model says
            "pad_token": PAD,
            "unk_token": PAD,  # required by some tools; byte-level BPE never produces an unknown
        }
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special,
            "model_max_length": model_max_length,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,  # would change decoded text: "hi ." -> "hi."
            "chat_template": CHAT_TEMPLATE,
        }
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "ChatTokenizer":
        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise GuppyError(f"{path}: no tokenizer here; train a model first (guppy train)")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise GuppyError(f"{path}: not a readable tokenizer ({e}); train again to rewrite it") from None
        missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
        if missing:
            raise GuppyError(f"{path}: lacks the chat tokens {', '.join(missing)}; was it made by guppy?")
        return cls(tok)

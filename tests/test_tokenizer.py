"""The tokenizer: lossless, ChatML turns, the right learn mask, and readable by transformers; both kinds,
byte-level BPE for a spaced script and character-level BPE for a corpus written without spaces."""

from __future__ import annotations

import pytest

from guppy.errors import GuppyError
from guppy.spec.language import is_unspaced_char
from guppy.model.tokenizer import IM_END, IM_START, MAX_UNSPACED_TOKEN, PAD, ChatTokenizer, train_tokenizer

CHAT = [
    {"role": "user", "content": "what do you love"},
    {"role": "assistant", "content": "food. i love food!"},
    {"role": "user", "content": "and the water?"},
    {"role": "assistant", "content": "the water is nice, it's warm."},
]
CORPUS = [
    "what do you love? food. i love food! flakes and pellets.",
    "the water is nice, it's warm. i'm a fish and i don't know money.",
    "are you hungry 42 times a day? yes, 7 pellets, 1000 flakes.",
] * 30
# A panda's corpus: one clause said over and over (byte-level BPE made it one token), and characters
# seen once or twice (银 stayed 3 byte tokens).
ZH_CORPUS = [
    "竹子是世界上最好吃的东西。我每天吃竹子，然后睡觉。",
    "你好！今天的竹笋很嫩，我吃了很多。",
    "我住在园子里，晚上在树上休息。",
] * 300 + ["银色的月亮。", "银杏叶落了。", "一只熊猫在爬树。"]


@pytest.fixture(scope="module", params=["bytes", "characters"])
def tok(request) -> ChatTokenizer:
    if request.param == "bytes":
        return train_tokenizer(CORPUS, vocab_size=400)
    return train_tokenizer(ZH_CORPUS + CORPUS[:3], vocab_size=400)


@pytest.fixture(scope="module")
def zh() -> ChatTokenizer:
    return train_tokenizer(ZH_CORPUS, vocab_size=4096)


def test_a_corpus_written_without_spaces_gets_no_token_longer_than_a_word(zh):
    texts = [zh.decode([i]) for i in range(zh.vocab_size)]
    longest = max(sum(map(is_unspaced_char, t)) for t in texts)
    assert longest == MAX_UNSPACED_TOKEN  # words of up to 4, not the clause
    assert len(zh.encode("竹子是世界上最好吃的东西")) >= 3


def test_every_character_of_the_corpus_has_its_own_token(zh):
    characters = {ch for text in ZH_CORPUS for ch in text}
    assert [ch for ch in characters if len(zh.encode(ch)) != 1] == []
    assert len(zh.encode("银")) == 1  # seen twice
    assert zh.decode(zh.encode("鑫 never seen")) == "鑫 never seen"  # an unseen one falls back to its bytes


def test_a_spaced_corpus_keeps_byte_level_bpe():
    english = train_tokenizer(CORPUS + ["银"], vocab_size=400)
    assert english.tokenizer.pre_tokenizer.__class__.__name__ == "ByteLevel"


@pytest.mark.parametrize("text", [
    "hello world, this is plain ascii.",
    "0123456789 3.14159 -42 1,000,000",
    "it's, don't, i'm, we'll, they've, you'd, I'M",
    "café naïve 日本語 🐟🫧 Ωμέγα ﷽",
    "  leading and trailing spaces \n\n\t tabs and newlines  ",
])
def test_encode_decode_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_vocab_is_what_the_corpus_supports():
    small = train_tokenizer(["a tiny corpus, only a few words."], vocab_size=4096)
    assert 256 + 3 <= small.vocab_size < 4096  # every byte + the special tokens, a few merges, no padding


def test_special_tokens_are_single_ids(tok):
    assert (tok.pad_id, tok.im_start_id, tok.im_end_id) == (0, 1, 2)
    assert tok.encode(IM_START + IM_END + PAD) == [1, 2, 0]


def test_decode_skips_special_tokens(tok):
    ids, _ = tok.encode_chat(CHAT[:2])
    assert tok.decode(ids) == "user\nwhat do you love\nassistant\nfood. i love food!\n"


def test_encode_chat_is_chatml(tok):
    ids, mask = tok.encode_chat(CHAT)
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in CHAT)
    assert ids == tok.encode(text)
    assert len(mask) == len(ids)


def test_learn_mask_covers_exactly_assistant_content_and_its_end(tok):
    ids, mask = tok.encode_chat(CHAT)
    learned = [i for i, m in zip(ids, mask) if m]
    replies = [m["content"] for m in CHAT if m["role"] == "assistant"]
    assert learned == tok.encode(replies[0]) + [tok.im_end_id] + tok.encode(replies[1]) + [tok.im_end_id]
    # and the learned tokens are where the replies are, not copies of them elsewhere
    assert tok.decode([i for i, m in zip(ids, mask) if not m]) == (
        "user\nwhat do you love\nassistant\n\nuser\nand the water?\nassistant\n\n")


def test_encode_prompt_is_chat_so_far_then_assistant_header(tok):
    ids, _ = tok.encode_chat(CHAT[:3])
    assert tok.encode_prompt(CHAT[:3]) == ids + [tok.im_start_id] + tok.encode("assistant\n")


def test_transformers_chat_template_matches_encode_prompt_and_encode_chat(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for chat in (CHAT[:1], CHAT[:3], [{"role": "user", "content": "  spaces first"}]):
        got = hf.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert list(got) == tok.encode_prompt(chat)
    got = hf.apply_chat_template(CHAT, tokenize=True, return_dict=False)
    assert list(got) == tok.encode_chat(CHAT)[0]
    assert hf.eos_token_id == tok.im_end_id and hf.pad_token_id == tok.pad_id
    assert hf.decode(tok.encode("it's 42 🐟")) == "it's 42 🐟"


def test_save_then_load_keeps_ids_and_fingerprint(tok, tmp_path):
    tok.save(tmp_path)
    back = ChatTokenizer.load(tmp_path)
    assert back.fingerprint() == tok.fingerprint()
    assert back.encode_chat(CHAT) == tok.encode_chat(CHAT)
    assert back.vocab_size == tok.vocab_size


def test_fingerprint_differs_for_another_corpus(tok):
    other = train_tokenizer(["something else entirely, about cats."] * 10, vocab_size=400)
    assert other.fingerprint() != tok.fingerprint()
    assert len(tok.fingerprint()) == 16


def test_load_missing_or_corrupt_tokenizer_is_a_user_error(tmp_path):
    with pytest.raises(GuppyError, match="tokenizer.json"):
        ChatTokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(GuppyError, match=str(tmp_path)):
        ChatTokenizer.load(tmp_path)


JS = """import { Tokenizer } from "%s";
import fs from "fs";
const tok = new Tokenizer(JSON.parse(fs.readFileSync("tokenizer.json")), JSON.parse(fs.readFileSync("tokenizer_config.json")));
const out = JSON.parse(fs.readFileSync("texts.json")).map(t => tok.encode(t, {add_special_tokens: false}).ids);
console.log(JSON.stringify(out));
"""


def test_the_playgrounds_tokenizers_js_encodes_as_python_does(tok, tmp_path):
    """The web playground tokenizes with the vendored tokenizers.js: same ids for both kinds of BPE."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    import guppy.export

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    vendored = Path(guppy.export.__file__).parent / "playground" / "vendor" / "tokenizers.min.mjs"
    tok.save(tmp_path)
    texts = [f"{IM_START}user\n竹子是世界上最好吃的东西？{IM_END}\n{IM_START}assistant\n", "银 鑫 hello  world\n",
             "水草のあいだにエサのかけらがかくれてるの。TVを見た！", "🐟 naïve 12,000円"]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    (tmp_path / "t.mjs").write_text(JS % vendored.as_uri())
    out = subprocess.run(["node", "t.mjs"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [tok.encode(t) for t in texts]

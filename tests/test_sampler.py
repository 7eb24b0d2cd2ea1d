"""The sampler: the cache and the batch change no greedy token; seeds, limits and the
end-of-turn token behave; sampling follows the model's distribution."""

from __future__ import annotations

import pytest
import torch

from guppy.model.gpt import GPT, ModelConfig
from guppy.model.sampler import complete, generate, nucleus, sample_next
from guppy.model.tokenizer import train_tokenizer

NO_STOP = -1  # a stop id no model can produce: every row runs to max_new_tokens


def tiny_model(vocab_size: int = 64, context: int = 64) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=vocab_size, context=context, n_layer=2, n_head=4, d_model=32, d_ff=64)).eval()


def tokens(model, prompts, **kwargs) -> list[list[int]]:
    """Run `generate` to the end; one list of new tokens per prompt."""
    steps = list(generate(model, prompts, **{"stop_id": NO_STOP, "temperature": 0.0, **kwargs}))
    return torch.stack(steps, dim=1).tolist() if steps else [[] for _ in prompts]


PROMPTS = [[5, 9, 2, 33, 7], [1], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], [3, 3, 3]]


def test_kv_cache_greedy_equals_no_cache_greedy():
    model = tiny_model()
    assert tokens(model, PROMPTS, max_new_tokens=20) == tokens(model, PROMPTS, max_new_tokens=20, use_cache=False)


@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_greedy_equals_one_by_one_with_prompts_of_different_lengths(use_cache):
    model = tiny_model()
    batched = tokens(model, PROMPTS, max_new_tokens=20, use_cache=use_cache)
    alone = [tokens(model, [p], max_new_tokens=20, use_cache=use_cache)[0] for p in PROMPTS]
    assert batched == alone


def test_temperature_zero_is_deterministic():
    model = tiny_model()
    assert tokens(model, PROMPTS, max_new_tokens=12) == tokens(model, PROMPTS, max_new_tokens=12)


def test_same_seed_same_sample_and_other_seed_another():
    model = tiny_model()

    def sample(seed):
        return tokens(model, PROMPTS, max_new_tokens=16, temperature=1.0, generator=torch.Generator().manual_seed(seed))

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_top_k_1_equals_greedy():
    model = tiny_model()
    greedy = tokens(model, PROMPTS, max_new_tokens=12)
    assert tokens(model, PROMPTS, max_new_tokens=12, temperature=1.5, top_k=1) == greedy
    assert tokens(model, PROMPTS, max_new_tokens=12, temperature=1.5, top_p=1e-6) == greedy


def test_max_new_tokens_is_respected():
    model = tiny_model()
    assert [len(t) for t in tokens(model, PROMPTS, max_new_tokens=7)] == [7] * len(PROMPTS)
    assert tokens(model, PROMPTS, max_new_tokens=0) == [[] for _ in PROMPTS]


def test_long_prompt_is_cut_from_the_left_to_fit_the_context():
    model = tiny_model(context=16)
    long = list(range(1, 40))
    out = tokens(model, [long], max_new_tokens=6)[0]
    assert len(out) == 6
    assert out == tokens(model, [long[-10:]], max_new_tokens=6)[0]  # 10 prompt + 6 new = 16
    # A long max_new_tokens never cuts the question away: half the context stays the prompt's.
    wordy = tokens(model, [long], max_new_tokens=40)[0]
    assert len(wordy) == 8 and wordy == tokens(model, [long[-8:]], max_new_tokens=8)[0]
    short = list(range(1, 6))
    assert tokens(model, [short], max_new_tokens=40)[0] == tokens(model, [short], max_new_tokens=11)[0]


def test_stops_at_end_of_turn_token():
    model = tiny_model()
    free = tokens(model, PROMPTS, max_new_tokens=20)
    stop = free[0][3]  # the 4th token of the first reply becomes the end-of-turn token
    out = tokens(model, PROMPTS, max_new_tokens=20, stop_id=stop)
    for row, free_row in zip(out, free):
        i = free_row.index(stop) if stop in free_row else len(free_row)
        assert row[:i] == free_row[:i]  # the same until it says the stop token,
        assert all(t == stop for t in row[i:])  # then only the stop token


def test_generation_ends_once_every_row_has_stopped():
    model = tiny_model()
    stop = tokens(model, [PROMPTS[0]], max_new_tokens=1)[0][0]  # its very first greedy token
    assert tokens(model, [PROMPTS[0]], max_new_tokens=20, stop_id=stop) == [[stop]]


def test_sampling_follows_the_distribution_and_never_picks_what_top_k_removed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20_000, 1)
    g = torch.Generator().manual_seed(0)
    picks = sample_next(logits, temperature=1.0, top_k=None, top_p=None, uniform=torch.rand(20_000, 1, generator=g))
    freq = torch.bincount(picks, minlength=4) / len(picks)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015, rtol=0)
    picks = sample_next(logits, temperature=1.0, top_k=2, top_p=None, uniform=torch.rand(20_000, 1, generator=g))
    assert set(picks.tolist()) == {0, 1}
    picks = sample_next(logits, temperature=1.0, top_k=None, top_p=0.7,  # 0.5 + 0.3 reach 0.7
                        uniform=torch.rand(20_000, 1, generator=g))
    assert set(picks.tolist()) == {0, 1}


def test_nucleus_keeps_what_sorting_the_whole_row_keeps_for_peaked_and_flat_rows():
    """nucleus() sorts the 64 most likely tokens first and a whole row only where they fall short of top_p;
    the tokens it keeps are the definition's: sort everything, keep while the mass before is < top_p."""
    torch.manual_seed(0)
    ranks = torch.stack([torch.randperm(4096) for _ in range(16)]).float()  # no two logits of a row tie
    flat = ranks * 1e-5  # an untrained model: the nucleus is most of the vocabulary
    peaked = ranks * 0.1  # a trained one: a few dozen tokens
    logits = torch.cat([flat, peaked])[torch.randperm(32)]  # both kinds in one batch
    for top_p in (0.5, 0.9, 0.999):
        ordered, order = logits.softmax(-1).sort(dim=-1, descending=True)
        keep = (ordered.cumsum(-1) - ordered) < top_p
        expected = torch.zeros_like(keep).scatter(-1, order, keep)
        assert torch.equal(nucleus(logits, top_p) > float("-inf"), expected)
        assert torch.equal(nucleus(logits, top_p, sort_all=True) > float("-inf"), expected)  # a GPU's way
    assert (nucleus(peaked, 0.9) > float("-inf")).sum(-1).max() < 64 < (nucleus(flat, 0.9) > float("-inf")).sum(-1).min()


@pytest.fixture(scope="module")
def chat_setup():
    tok = train_tokenizer(["what do you love? food. i love food! the water is warm."] * 20, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context=64, n_layer=2, n_head=2, d_model=32, d_ff=64))
    return model.eval(), tok


def test_complete_same_seed_same_replies(chat_setup):
    model, tok = chat_setup
    chats = ["what do you love", [{"role": "user", "content": "hi"}], "the water"]
    first = complete(model, tok, chats, seed=3, max_new_tokens=10, temperature=1.0)
    assert first == complete(model, tok, chats, seed=3, max_new_tokens=10, temperature=1.0)
    assert first != complete(model, tok, chats, seed=4, max_new_tokens=10, temperature=1.0)
    assert len(first) == 3 and all(isinstance(r, str) for r in first)


def test_complete_str_is_one_user_message_and_batching_changes_no_greedy_reply(chat_setup):
    model, tok = chat_setup
    chats = ["what do you love", "hi", "is the water warm today, fish?"]
    as_messages = [[{"role": "user", "content": c}] for c in chats]
    replies = complete(model, tok, chats, temperature=0.0, max_new_tokens=12)
    assert replies == complete(model, tok, as_messages, temperature=0.0, max_new_tokens=12, batch_size=1)


def test_complete_reply_is_the_text_before_end_of_turn(chat_setup):
    model, tok = chat_setup
    prompt = tok.encode_prompt([{"role": "user", "content": "hi"}])
    steps = list(generate(model, [prompt], max_new_tokens=10, temperature=0.0, stop_id=tok.im_end_id))
    ids = [int(s[0]) for s in steps]
    if tok.im_end_id in ids:
        ids = ids[:ids.index(tok.im_end_id)]
    model.train()
    assert complete(model, tok, ["hi"], temperature=0.0, max_new_tokens=10) == [tok.decode(ids).strip()]
    assert model.training  # sampled in eval mode, then left as it was


def test_sampled_replies_do_not_depend_on_which_rows_share_a_batch(chat_setup):
    """Each reply's random numbers are drawn up front by its place among the prompts, so a GPU's larger batches
    say what a CPU's say: the same seed, the same replies in batches of 1, 3 and all."""
    model, tok = chat_setup
    prompts = ["what do you love?", "food", "is the water warm?", "hello there", "love", "what?", "the water"]
    replies = [complete(model, tok, prompts, seed=3, temperature=1.0, top_p=0.95, max_new_tokens=10, batch_size=b)
               for b in (1, 3, None)]
    assert replies[0] == replies[1] == replies[2]
    assert len(set(replies[0])) > 2  # sampled, not one reply for all


def test_a_lagged_end_check_changes_no_token_and_ends_at_most_its_lag_later(monkeypatch):
    """On a GPU, generate() learns that every row stopped LAG steps late, to never wait for the GPU within a step
    (sampler.AllDone). The same lag on the CPU: the same tokens, then only stop tokens, at most LAG more steps."""
    import guppy.model.sampler as sampler

    model = tiny_model()

    def run(stop):
        return torch.stack(list(generate(model, PROMPTS, max_new_tokens=40, temperature=1.0, stop_id=stop,
                                         generator=torch.Generator().manual_seed(0))), dim=1).tolist()
    sampled = run(NO_STOP)
    # the stop: the token every row says soonest, so that generation ends well before max_new_tokens
    stop = min(set(sampled[0]), key=lambda t: max(row.index(t) if t in row else 99 for row in sampled))
    now = run(stop)
    assert len(now[0]) < 40 - sampler.AllDone.LAG
    monkeypatch.setattr(sampler, "done_lag", lambda device: sampler.AllDone.LAG)
    later = run(stop)
    assert [row[:len(now[0])] for row in later] == now
    assert len(later[0]) == len(now[0]) + sampler.AllDone.LAG
    assert all(t == stop for row in later for t in row[len(now[0]):])

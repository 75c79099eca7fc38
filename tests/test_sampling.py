"""The seeded draw: exact in distribution (chi-square against the softmax), per-sample seeded and
batch independent; guidance scales per cache slot."""

import numpy as np
import pytest
import torch

from lpd_core.sampling import draw, filter_logits, guidance_table, seed_uniforms

# chi-square quantile for p = 0.001 (a correct sampler fails one run in a thousand)
CHI2_999 = {7: 24.32, 15: 37.70}


def _chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_draw_follows_the_softmax(temperature):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0, 1.5])
    samples = 40000
    uniforms = torch.from_numpy(seed_uniforms(range(samples), 1))[:, 0]
    tokens = draw(logits.expand(samples, -1), uniforms, temperature)
    counts = np.bincount(tokens.numpy(), minlength=8)
    probs = (logits / temperature).softmax(-1).double().numpy()
    assert _chi_square(counts, probs) < CHI2_999[7]


def test_draw_with_top_k_and_top_p_follows_the_renormalised_softmax():
    logits = torch.linspace(3, -3, 16)
    samples = 40000
    uniforms = torch.from_numpy(seed_uniforms(range(7, 7 + samples), 1))[:, 0]
    tokens = draw(logits.expand(samples, -1), uniforms, 1.0, top_k=12, top_p=0.95)
    kept = filter_logits(logits[None], 12, 0.95)[0]
    probs = kept.softmax(-1).double().numpy()
    counts = np.bincount(tokens.numpy(), minlength=16)
    assert counts[probs == 0].sum() == 0 and (probs == 0).sum() >= 4  # the filters really cut
    support = probs > 0
    assert _chi_square(counts[support], probs[support]) < CHI2_999[int(support.sum()) - 1]


def test_zero_probability_tokens_are_never_drawn():
    logits = torch.full((64,), float("-inf"))
    logits[[5, 40]] = 0.0
    uniforms = torch.tensor([0.0, 1 - 2.0 ** -52, 0.5, 0.4999999], dtype=torch.float64)
    tokens = draw(logits.expand(4, -1), uniforms)
    assert tokens.tolist() == [5, 40, 40, 5]


def test_uniforms_depend_on_the_seed_alone():
    both = seed_uniforms([3, 2**64 - 1], 300)
    assert both.shape == (2, 300) and both.dtype == np.float64
    assert np.array_equal(both[0], seed_uniforms([3], 300)[0])
    assert np.array_equal(both[1], seed_uniforms([2**64 - 1], 300)[0])
    assert np.array_equal(seed_uniforms([3], 100)[0], both[0, :100])  # counter-based: a prefix
    assert 0 <= both.min() and both.max() < 1
    neighbours = seed_uniforms(range(200), 256)  # adjacent seeds: unrelated streams
    correlation = np.corrcoef(neighbours[:-1].ravel(), neighbours[1:].ravel())[0, 1]
    assert abs(correlation) < 0.01
    assert abs(neighbours.mean() - 0.5) < 0.01 and abs(neighbours.var() - 1 / 12) < 0.002


def test_guidance_table_per_slot():
    linear = guidance_table(4.0, "linear", 8, 1 + 8 + 3)
    assert linear.shape == (12,)
    assert torch.allclose(linear[1:9], 1 + 3.0 * torch.arange(8) / 8)
    assert linear[0] == 1 and torch.equal(linear[9:], torch.ones(3))
    assert torch.equal(guidance_table(2.5, "constant", 8, 9)[1:], torch.full((8,), 2.5))
    with pytest.raises(KeyError):  # the user's value is checked before (settings): here it is a bug
        guidance_table(2.0, "cosine", 8, 9)


def test_generation_uses_its_own_seeds(reference_model):
    from lpd_core import build_schedule, generate
    schedule = build_schedule(8, steps=6, order="random", seed=1)
    batch = generate(reference_model, schedule, [1, 2, 3, 4], cfg=2.0, seeds=[9, 2**64 - 1, 0, 5])
    for i, (label, seed) in enumerate([(1, 9), (2, 2**64 - 1), (3, 0), (4, 5)]):
        single = generate(reference_model, schedule, [label], cfg=2.0, seeds=seed)
        assert torch.equal(batch[i], single[0])
    wrapped = generate(reference_model, schedule, [1, 2], cfg=2.0, seeds=2**64 - 1)  # s, s + 1 mod 2^64
    assert torch.equal(wrapped[1], generate(reference_model, schedule, [2], cfg=2.0, seeds=0)[0])

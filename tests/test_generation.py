import pytest

from mira.config import ModelConfig
from mira.data import Example
from mira.data.encode import encode
from mira.generation import exact_match, generate, normalize, rouge_l
from mira.model import attach_adapter, tiny_model


def test_scores():
    assert normalize("  The  Cat, sat! ") == "the cat sat"
    assert exact_match("paris.", ("Lyon", "Paris")) == 1.0 and exact_match("paris", ("Lyon",)) == 0.0
    assert rouge_l("the cat sat", ("the cat sat",)) == 1.0
    assert rouge_l("the cat", ("a dog", "the cat sat")) == pytest.approx(0.8)  # best reference: P=1, R=2/3
    assert rouge_l("", ("anything",)) == 0.0


def test_generate_greedy_is_deterministic_and_batched():
    model, tok = tiny_model()
    model = attach_adapter(model, ModelConfig(), seed=0)
    enc = [encode(Example(p, "x"), tok, 64, "plain") for p in ["a", "a longer prompt", "mid"]]
    one = generate(model, tok, enc, max_new_tokens=5, batch_size=1)
    three = generate(model, tok, enc, max_new_tokens=5, batch_size=3)
    assert len(one) == 3 and one == three  # left padding does not change greedy answers

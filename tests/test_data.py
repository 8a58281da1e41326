from mira.config import DataConfig
from mira.data import Example, load_clients
from mira.data.encode import IGNORE, batch_schedule, collate, encode
from mira.model import tiny_model


def test_synthetic_suite_shape_and_determinism():
    a = load_clients(DataConfig(train_per_client=20, test_per_client=10), seed=0)
    b = load_clients(DataConfig(train_per_client=20, test_per_client=10), seed=0)
    c = load_clients(DataConfig(train_per_client=20, test_per_client=10), seed=1)
    assert len(a) >= 8 and len({x.family for x in a}) >= 3
    assert [x.train for x in a] == [x.train for x in b]
    assert [x.train for x in a] != [x.train for x in c]
    for client in a:
        assert len(client.train) == 20 and len(client.test) == 10
        assert not {e.prompt for e in client.train} & {e.prompt for e in client.test}


def test_synthetic_answers_are_correct():
    clients = {c.name: c for c in load_clients(DataConfig(train_per_client=5, test_per_client=5), seed=0)}
    ex = clients["add"].train[0]
    a, b = (int(x) for x in ex.prompt.split("Numbers: ")[1].split(" and "))
    assert int(ex.response) == a + b
    ex = clients["sort_words"].train[0]
    assert ex.response.split() == sorted(ex.prompt.split("Words: ")[1].split())


def test_encode_masks_prompt_and_appends_eos():
    _, tok = tiny_model()
    enc = encode(Example("Say hi", "hi"), tok, max_length=64, prompt_format="plain")
    n_resp = len("hi") + 1
    assert enc.labels[-n_resp:] == enc.input_ids[-n_resp:]
    assert enc.input_ids[-1] == tok.eos_token_id
    assert all(label == IGNORE for label in enc.labels[:-n_resp])


def test_truncation_cuts_prompt_from_left_and_keeps_response():
    _, tok = tiny_model()
    enc = encode(Example("x" * 200 + "END", "answer"), tok, max_length=40, prompt_format="plain")
    assert len(enc.input_ids) == 40
    assert tok.decode(enc.input_ids[-7:-1]) .replace(" ", "") == "answer"
    long = encode(Example("question", "y" * 100), tok, max_length=40, prompt_format="plain")
    assert len(long.input_ids) == 40 and sum(label != IGNORE for label in long.labels) >= 20


def test_collate_pads_right_and_masks_padding():
    _, tok = tiny_model()
    batch = collate([encode(Example("a", "b"), tok, 64, "plain"), encode(Example("abc", "b"), tok, 64, "plain")],
                    tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape
    assert batch["attention_mask"][0, -2:].tolist() == [0, 0]
    assert batch["labels"][0, -2:].tolist() == [IGNORE, IGNORE]


def test_batch_schedule_is_deterministic_and_covers_data():
    s = batch_schedule(10, 4, steps=5, seed=0, client=1, round_=2)
    assert s == batch_schedule(10, 4, steps=5, seed=0, client=1, round_=2)
    assert s != batch_schedule(10, 4, steps=5, seed=0, client=1, round_=3)
    assert all(len(b) == 4 for b in s)
    flat = [i for b in s for i in b]
    assert sorted(flat[:10]) == list(range(10))  # the first pass is a permutation
    assert batch_schedule(3, 8, steps=1, seed=0, client=0, round_=1)[0].__len__() == 3

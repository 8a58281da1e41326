"""Hostile client updates and hostile input records."""

import json
import string

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mira.client as client
from mira import laplacian_step
from mira.algorithms.base import screen_replies
from mira.data import DataError
from mira.data.loaders import DOLLY_CATEGORIES, load_dolly
from mira.simulation import run


def screen_updates(thetas, trained, **bounds):
    """screen_replies on adapters alone: client k was sent thetas[k] and returned trained[k]."""
    sent = {k: {"adapter": thetas[k]} for k in trained}
    accepted, rejected = screen_replies(sent, {k: {"adapter": t} for k, t in trained.items()}, **bounds)
    return {k: reply["adapter"] for k, reply in accepted.items()}, rejected


def test_screen_updates_rejects_nan_inf_wrong_shapes_and_missing_entries():
    thetas = torch.zeros(4, 3)
    trained = {0: torch.tensor([1.0, float("nan"), 0.0]), 1: torch.tensor([float("inf"), 0.0, 0.0]),
               2: torch.zeros(5), 3: torch.tensor([3.0, 4.0, 0.0])}
    accepted, rejected = screen_updates(thetas, trained)
    assert list(accepted) == [3] and torch.equal(accepted[3], trained[3])
    assert "1 non-finite" in rejected[0] and "non-finite" in rejected[1] and "shape (5,)" in rejected[2]
    clipped, _ = screen_updates(thetas, {3: trained[3]}, max_update_norm=1.0)
    torch.testing.assert_close(clipped[3], torch.tensor([0.6, 0.8, 0.0]))
    sent = {0: {"adapter": thetas[0], "global": thetas[1]}}  # a reply without an entry it was sent
    _, rejected = screen_replies(sent, {0: {"adapter": thetas[0]}})
    assert rejected == {0: "global: missing"}


def test_clip_to_median_scales_down_only_the_outlier():
    thetas = torch.ones(4, 2)
    updates = {0: torch.tensor([2.0, 1.0]), 1: torch.tensor([1.0, 3.0]), 2: torch.tensor([1.0, 1.5]),
               3: torch.tensor([-99.0, 1.0])}  # update norms 1, 2, 0.5 and 100: median 1.5
    accepted, _ = screen_updates(thetas, updates, clip_to_median=2.0)
    for k in (0, 1, 2):
        assert torch.equal(accepted[k], updates[k])  # within 2 x 1.5 = 3
    torch.testing.assert_close(accepted[3], torch.tensor([-2.0, 1.0]))  # cut to length 3, same direction
    tighter, _ = screen_updates(thetas, updates, max_update_norm=0.5, clip_to_median=2.0)
    assert all(abs(float((tighter[k] - thetas[k]).norm()) - 0.5) < 1e-6 for k in (0, 1, 3))  # the smaller bound


def test_poisoned_client_is_rejected_and_neighbours_stay_clean(tiny_config, monkeypatch):
    real = client.train_local

    def poisoned(model, slot, theta, examples, *args, **kwargs):
        result = real(model, slot, theta, examples, *args, **kwargs)
        if examples is poisoned.target:
            result.theta = torch.full_like(result.theta, float("nan"))
        return result

    cfg = tiny_config("name=p", "federation.rounds=1", "federation.sample_fraction=1.0")
    ws = client.build_workspace(cfg)
    poisoned.target = ws.train_sets[0]
    monkeypatch.setattr(client, "train_local", poisoned)
    result = run(cfg, progress=False, ws=ws)
    assert torch.isfinite(result.thetas).all()
    assert torch.equal(result.thetas[0], ws.initial_theta)  # kept its last good adapter
    assert "non-finite" in result.history[-1]["rejected"][ws.clients[0].name]
    assert not torch.equal(result.thetas[1], ws.initial_theta)  # the others trained and were aggregated


# ------------------------------------------------------------------ property-based: the server step

matrices = st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.lists(st.floats(-10, 10), min_size=k * 3, max_size=k * 3).map(lambda v: torch.tensor(v).reshape(k, 3)),
    st.lists(st.floats(0, 1), min_size=k * k, max_size=k * k).map(lambda v: torch.tensor(v).reshape(k, k)),
    st.permutations(range(k))))


def _graph(raw):
    sym = (raw + raw.T) / 2
    return sym * (1 - torch.eye(len(raw)))


@settings(max_examples=60, deadline=None)
@given(matrices, st.floats(0, 0.2))
def test_server_step_properties(data, step):
    thetas, raw, perm = data
    thetas, adj, perm = thetas.double(), _graph(raw).double(), torch.tensor(perm)
    out = laplacian_step(thetas, adj, step)
    torch.testing.assert_close(out.mean(0), thetas.mean(0))                      # mean preserved
    assert torch.equal(laplacian_step(thetas, adj, 0.0), thetas)      # λ = 0: identity
    permuted = laplacian_step(thetas[perm], adj[perm][:, perm], step)  # clients relabelled
    torch.testing.assert_close(permuted, out[perm])


# ------------------------------------------------------------------ property-based: malformed records

json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        st.text(string.printable, max_size=5), st.lists(st.integers(), max_size=2))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(["instruction", "context", "response", "category", "extra"]),
                       json_values, max_size=5))
def test_dolly_loader_accepts_valid_records_and_names_the_line_of_bad_ones(tmp_path_factory, record):
    path = tmp_path_factory.mktemp("d") / "d.jsonl"
    good = {"instruction": "q", "context": "", "response": "a", "category": "open_qa"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    valid = (all(isinstance(record.get(k), str) for k in ("instruction", "context", "response", "category"))
             and record["instruction"].strip() and record["response"].strip()
             and record["category"] in DOLLY_CATEGORIES)
    if valid:
        assert sum(len(t.examples) for t in load_dolly(str(path))) == 2
    else:
        with pytest.raises(DataError, match=r"d\.jsonl:2: "):
            load_dolly(str(path))

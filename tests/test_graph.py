import json

import pytest
import torch

from mira.algorithms.mira.algorithm import check_step
from mira.graph import (
    GraphError,
    build_graph,
    family_graph,
    laplacian,
    normalize_graph,
    random_graph,
    read_graph,
    uniform_graph,
    validate_graph,
)
from mira.simulation import run


def test_builders_and_laplacian():
    assert torch.equal(uniform_graph(3), torch.tensor([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]]))
    fam = family_graph(["a", "b", "a"])
    assert torch.equal(fam, torch.tensor([[0.0, 0, 1], [0, 0, 0], [1, 0, 0]]))
    lap = laplacian(uniform_graph(3))
    assert torch.equal(lap, torch.tensor([[2.0, -1, -1], [-1, 2, -1], [-1, -1, 2]]))
    assert normalize_graph(uniform_graph(5)).sum(1).max() == pytest.approx(1.0)


def test_read_csv_and_json(tmp_path):
    (tmp_path / "g.csv").write_text("0,1,0\n1,0,2\n0,2,0\n")
    (tmp_path / "g.json").write_text(json.dumps([[0, 1], [1, 0]]))
    assert read_graph(tmp_path / "g.csv")[1, 2] == 2
    assert read_graph(tmp_path / "g.json").shape == (2, 2)


@pytest.mark.parametrize("text,match", [
    ("0,1\n1,0,1\n", "not square"),
    ("0,x\n1,0\n", "row 1: expected numbers"),
])
def test_read_errors(tmp_path, text, match):
    (tmp_path / "g.csv").write_text(text)
    with pytest.raises(GraphError, match=match):
        read_graph(tmp_path / "g.csv")


def test_read_errors_json_and_missing(tmp_path):
    (tmp_path / "g.json").write_text("[[0, 1],\n [1, 0]")
    with pytest.raises(GraphError, match="line 2: invalid JSON"):
        read_graph(tmp_path / "g.json")
    with pytest.raises(GraphError, match="cannot read"):
        read_graph(tmp_path / "missing.csv")


@pytest.mark.parametrize("matrix,match", [
    (torch.zeros(2, 3), "square"),
    (torch.zeros(2, 2), "2×2 but there are 3 clients"),
    (torch.tensor([[0, float("nan"), 0], [1, 0, 0], [0, 0, 0]]), "not finite"),
    (torch.tensor([[0, -1.0, 0], [-1, 0, 0], [0, 0, 0]]), "negative"),
    (torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]), "self-loops"),
])
def test_validation_errors(matrix, match):
    with pytest.raises(GraphError, match=match):
        validate_graph(matrix, 3)


def test_asymmetric_graph_is_symmetrised_with_a_note():
    a, notes = validate_graph(torch.tensor([[0.0, 2.0], [0.0, 0.0]]), 2)
    assert torch.equal(a, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert "symmetric" in notes[0]


def test_step_bound_refused_unless_forced():
    adj = uniform_graph(4)  # max degree 3
    check_step(0.3, adj)
    with pytest.raises(GraphError, match="convex combination"):
        check_step(0.4, adj)
    check_step(0.4, adj, force=True)


def test_random_graph_is_seeded_symmetric_and_within_its_range():
    a = random_graph(40, density=0.3, low=0.2, high=0.9, seed=5)
    assert torch.equal(a, random_graph(40, 0.3, 0.2, 0.9, seed=5))
    assert not torch.equal(a, random_graph(40, 0.3, 0.2, 0.9, seed=6))
    assert torch.equal(a, a.T) and torch.all(a.diagonal() == 0)
    edges = a[torch.triu(torch.ones(40, 40, dtype=torch.bool), 1)]
    linked = edges[edges > 0]
    assert abs(len(linked) / len(edges) - 0.3) < 0.05  # 780 pairs
    assert linked.min() >= 0.2 and linked.max() <= 0.9


def test_random_graph_kind_runs(tiny_config):
    cfg = tiny_config("name=rnd", "mira.graph.kind=random", "mira.graph.density=0.5", "mira.graph.weight_min=0.5", "federation.rounds=1")
    result = run(cfg, progress=False)
    adjacency, _ = build_graph(cfg.mira.graph, [c.family for c in result.clients], cfg.seed)
    assert torch.equal(adjacency, adjacency.T) and adjacency.max() <= 1.0  # normalised to max degree 1

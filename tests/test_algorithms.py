import pytest
import torch

from mira import FedIT, Local, Mira, laplacian_step
from mira.algorithms.fedit import weighted_mean

THETAS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
ADJ = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]])


def test_laplacian_step_matches_hand_computation():
    # θ_k − 0.1·Σ_l a_kl (θ_k − θ_l), worked out by hand for each row.
    out = laplacian_step(THETAS, ADJ, 0.1)
    expected = torch.tensor([[0.9, 0.1], [0.5, 1.1], [1.6, 1.8]])
    torch.testing.assert_close(out, expected)


def test_laplacian_step_updates_only_sampled_rows_and_keeps_input():
    before = THETAS.clone()
    out = laplacian_step(THETAS, ADJ, 0.1, sampled=[1])
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.5, 1.1], [2.0, 2.0]]))
    assert torch.equal(THETAS, before)


def _reference_step(thetas, adjacency, step, sampled, only_sampled):
    """The rule written pair by pair: θ_k − step·Σ_l a_kl (θ_k − θ_l) over the neighbours that count."""
    out = thetas.clone()
    for k in sampled:
        neighbours = sampled if only_sampled else range(len(thetas))
        out[k] = thetas[k] - step * sum(adjacency[k, j] * (thetas[k] - thetas[j]) for j in neighbours)
    return out


@pytest.mark.parametrize("density", [0.05, 1.0])  # the sparse and the dense product
@pytest.mark.parametrize("only_sampled", [False, True])
def test_laplacian_step_equals_the_pairwise_rule_in_place_or_not(density, only_sampled):
    torch.manual_seed(2)
    k = 40
    thetas = torch.randn(k, 7, dtype=torch.float64)
    adj = torch.rand(k, k, dtype=torch.float64) * (torch.rand(k, k) < density)
    adj = (adj + adj.T) * (1 - torch.eye(k, dtype=torch.float64))
    sampled = [0, 3, 4, 10, 17, 33, 39]
    expected = _reference_step(thetas, adj, 0.02, sampled, only_sampled)
    torch.testing.assert_close(laplacian_step(thetas, adj, 0.02, sampled, only_sampled), expected)
    in_place = thetas.clone()
    assert laplacian_step(in_place, adj, 0.02, sampled, only_sampled, out=in_place) is in_place
    torch.testing.assert_close(in_place, expected)


def test_full_participation_symmetric_graph_preserves_mean():
    torch.manual_seed(0)
    thetas = torch.randn(6, 50)
    adj = torch.rand(6, 6)
    adj = (adj + adj.T) * (1 - torch.eye(6))
    out = laplacian_step(thetas, adj, 0.05)
    torch.testing.assert_close(out.mean(0), thetas.mean(0))
    assert not torch.allclose(out, thetas)


def replies(trained):
    """Clients' replies carrying these trained adapters."""
    return {k: {"adapter": theta} for k, theta in trained.items()}


def test_sampled_neighbours_variant_ignores_unsampled_clients():
    mira = Mira(ADJ, step=0.1, neighbours="sampled")
    trained = {0: THETAS[0], 1: THETAS[1]}
    out = mira.aggregate(THETAS.clone(), replies(trained), {0: 1, 1: 1})
    torch.testing.assert_close(out, torch.tensor([[0.9, 0.1], [0.1, 0.9], [2.0, 2.0]]))


def test_mira_uses_newest_copies_of_unsampled_neighbours():
    mira = Mira(ADJ, step=0.1, neighbours="all")
    trained = {1: torch.tensor([4.0, 4.0])}
    out = mira.aggregate(THETAS.clone(), replies(trained), {1: 10})
    # row 1: [4,4] − 0.1·(1·([4,4]−[1,0]) + 2·([4,4]−[2,2])) = [4,4] − 0.1·[7,8]
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [3.3, 3.2], [2.0, 2.0]]))


def test_lambda_zero_is_local_training():
    torch.manual_seed(1)
    thetas = torch.randn(4, 10)
    trained = {0: torch.randn(10), 2: torch.randn(10)}
    sizes = {0: 5, 2: 7}
    adj = torch.ones(4, 4) - torch.eye(4)
    assert torch.equal(Mira(adj, step=0.0).aggregate(thetas, replies(trained), sizes),
                       Local().aggregate(thetas, replies(trained), sizes))


def test_fedit_is_sample_weighted_mean_sent_to_every_client():
    thetas = torch.zeros(3, 2)
    trained = {0: torch.tensor([1.0, 2.0]), 2: torch.tensor([4.0, -1.0])}
    out = FedIT().aggregate(thetas, replies(trained), {0: 1, 2: 3})
    expected = torch.tensor([(1 + 12) / 4, (2 - 3) / 4])
    torch.testing.assert_close(out, expected.expand(3, 2))
    torch.testing.assert_close(weighted_mean(trained, {0: 1, 2: 3}), expected)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="adjacency has shape"):
        laplacian_step(THETAS, torch.zeros(2, 2), 0.1)
    with pytest.raises(ValueError, match="neighbours"):
        Mira(ADJ, 0.1, neighbours="some")

"""Server rules and client steps of the personalised-LoRA baselines, on hand-computed numbers,
and the learned task graph."""

import dataclasses

import torch

from mira.algorithms import Ditto, FedProx, FedSALoRA, FFALoRA
from mira.client import build_workspace, train_client
from mira.graph import GraphEstimator, edge_precision_recall, family_graph, similarity_graph, uniform_graph
from mira.simulation import run

# Three clients; the flat adapter is [a1, a2, b1, b2]: two LoRA A coordinates, then two B.
THETAS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]])
TRAINED = {0: torch.tensor([2.0, 2.0, 2.0, 2.0]), 2: torch.tensor([4.0, 8.0, 6.0, 0.0])}
REPLIES = {k: {"adapter": theta} for k, theta in TRAINED.items()}
SIZES = {0: 1, 2: 3}  # weights 1/4 and 3/4
A_MASK = torch.tensor([True, True, False, False])
# Server rules may write the new state into the one they are given: each test passes a copy.


def test_fedprox_and_ffa_lora_average_like_fedavg():
    # (1·[2,2,2,2] + 3·[4,8,6,0]) / 4 = [3.5, 6.5, 5, 0.5], given to every client.
    torch.testing.assert_close(FedProx().aggregate(THETAS.clone(), REPLIES, SIZES),
                               torch.tensor([[3.5, 6.5, 5.0, 0.5]] * 3))
    # FFA-LoRA: only B travels and is averaged; the (frozen) A of every row stays.
    ffa = FFALoRA(A_MASK)
    assert set(ffa.send(THETAS, 0)) == {"lora_b"} and torch.equal(ffa.send(THETAS, 0)["lora_b"], THETAS[0, 2:])
    out = ffa.aggregate(THETAS.clone(), {k: {"lora_b": theta[2:]} for k, theta in TRAINED.items()}, SIZES)
    torch.testing.assert_close(out, torch.cat([THETAS[:, :2], torch.tensor([[5.0, 0.5]] * 3)], dim=1))


def test_each_algorithm_sends_only_what_it_communicates(tiny_config):
    """Measured bytes per round: the algorithm's entries each way; its clients' private state apart."""
    ws = build_workspace(tiny_config())
    p, a = ws.slot.layout.numel, int(ws.slot.layout.lora_a_mask().sum())
    expected = {"mira": (p, 0), "fedit": (p, 0), "fedprox": (p, 0), "ffa_lora": (p - a, 0),  # B only
                "fedsa_lora": (a, 2 * p), "ditto": (p, 2 * p), "local": (0, 2 * p)}  # A only; w only; nothing
    for algorithm, (values, state) in expected.items():
        cfg = tiny_config(f"federation.algorithm={algorithm}", "federation.rounds=1", "eval.generate_per_client=0",
                          f"name=bytes-{algorithm}")
        record = run(cfg, progress=False, ws=dataclasses.replace(ws, cfg=cfg)).history[1]
        sampled = len(record["sampled"])
        assert (record["bytes_down"], record["bytes_up"], record["bytes_state"]) == \
            (sampled * values * 4, sampled * values * 4, sampled * state * 4), algorithm


def test_fedsa_lora_shares_a_and_keeps_b_local():
    fedsa = FedSALoRA(A_MASK)
    assert torch.equal(fedsa.send(THETAS, 1)["lora_a"], THETAS[1, :2])
    out = fedsa.aggregate(THETAS.clone(), {k: r | {"lora_a": r["adapter"][:2]} for k, r in REPLIES.items()}, SIZES)
    expected = torch.tensor([[3.5, 6.5, 2.0, 2.0],     # averaged A, its own trained B
                             [3.5, 6.5, 7.0, 8.0],     # not sampled: averaged A, B as before
                             [3.5, 6.5, 6.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_ditto_averages_the_global_copies_and_keeps_personal_rows():
    ditto = Ditto(mu=0.5)
    ditto.start(torch.zeros(4))
    trained_global = {0: torch.tensor([4.0, 0.0, 0.0, 0.0]), 2: torch.tensor([0.0, 4.0, 0.0, 8.0])}
    assert set(ditto.send(THETAS, 1)) == {"adapter", "global"}  # the personal and the global adapter
    out = ditto.aggregate(THETAS.clone(), {k: REPLIES[k] | {"global": g} for k, g in trained_global.items()}, SIZES)
    torch.testing.assert_close(out, torch.stack([TRAINED[0], THETAS[1], TRAINED[2]]))
    torch.testing.assert_close(ditto.global_theta, torch.tensor([1.0, 3.0, 0.0, 6.0]))
    assert torch.equal(ditto.state_dict()["global"], ditto.global_theta)


def test_similarity_graph_keeps_nearest_neighbours_and_skips_untrained():
    initial = torch.zeros(3)
    thetas = torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    graph = similarity_graph(thetas, initial, knn=1, threshold=0.0)
    cos01 = 1 / (1.01 ** 0.5)
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[1, 0] = cos01  # 2's nearest has similarity 0: no edge; 3 never trained
    torch.testing.assert_close(graph, expected)
    torch.testing.assert_close(similarity_graph(thetas, initial, knn=0, threshold=0.5), expected)


def test_graph_estimator_smooths_towards_the_estimate_for_trained_clients():
    initial = torch.zeros(2)
    estimator = GraphEstimator(uniform_graph(3), initial, knn=1, threshold=0.0, every=1, smoothing=0.5,
                               truth=family_graph(["x", "x", "y"]))
    thetas = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])  # client 2 has not trained
    used = estimator.update(thetas)
    expected = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    expected[0, 1] = expected[1, 0] = 0.5 * 1 + 0.5 * 1.0  # cos = 1 between clients 0 and 1
    torch.testing.assert_close(estimator.adjacency, expected)
    torch.testing.assert_close(used, expected / 2)  # normalised to max weighted degree 1
    assert estimator.report()["edge_precision"] == 1.0 and estimator.report()["edge_recall"] == 1.0


def test_edge_precision_recall():
    truth = family_graph(["a", "a", "b", "b"])
    est = torch.zeros(4, 4)
    est[0, 1] = est[1, 0] = est[0, 2] = est[2, 0] = 1.0
    assert edge_precision_recall(est, truth) == (0.5, 0.5)


def test_estimator_recovers_planted_families():
    torch.manual_seed(0)
    families = [f for f in "abc" for _ in range(3)]
    directions = {f: torch.randn(64) for f in "abc"}
    initial = torch.randn(64)
    thetas = torch.stack([initial + directions[f] + 0.3 * torch.randn(64) for f in families])
    estimator = GraphEstimator(uniform_graph(9), initial, knn=2, threshold=0.0, every=1, smoothing=1.0,
                               truth=family_graph(families))
    estimator.update(thetas)
    assert (estimator.report()["edge_precision"], estimator.report()["edge_recall"]) == (1.0, 1.0)
    assert torch.equal(estimator.adjacency > 0, family_graph(families) > 0)


def test_server_state_survives_resume(tiny_config):
    """Ditto's global adapter and a learned graph are in the checkpoint: 2 rounds + resume to 3
    equals 3 rounds straight."""
    for i, overrides in enumerate((["federation.algorithm=ditto", "ditto.mu=0.1"], ["mira.graph.kind=learned"])):
        straight = run(tiny_config(*overrides, "federation.rounds=3", f"name=straight{i}"), progress=False)
        run(tiny_config(*overrides, "federation.rounds=2", f"name=resumed{i}"), progress=False)
        resumed = run(tiny_config(*overrides, "federation.rounds=3", f"name=resumed{i}"), progress=False, resume=True)
        torch.testing.assert_close(resumed.thetas, straight.thetas, rtol=0, atol=1e-6)
        assert not torch.equal(straight.thetas[0], straight.thetas[1])


def test_local_objectives(tiny_config):
    """Each algorithm's client step trains as its method says."""
    ws = build_workspace(tiny_config())

    def step(received, *overrides):
        return train_client(dataclasses.replace(ws, cfg=tiny_config(*overrides)), 0, received, 1).reply

    start = ws.initial_theta
    mask = ws.slot.layout.lora_a_mask()
    trained_b = step({"lora_b": start[~mask]}, "federation.algorithm=ffa_lora")["lora_b"]  # B in, B out
    assert trained_b.shape == start[~mask].shape and not torch.equal(trained_b, start[~mask])
    shared_a = torch.randn(int(mask.sum()))
    fedsa = step({"adapter": start, "lora_a": shared_a}, "federation.algorithm=fedsa_lora")
    assert torch.equal(fedsa["lora_a"], fedsa["adapter"][mask])  # trained from the shared A received
    assert not torch.equal(fedsa["lora_a"], start[mask]) and not torch.equal(fedsa["adapter"][~mask], start[~mask])
    plain = step({"adapter": start}, "federation.algorithm=fedprox", "fedprox.mu=0")["adapter"]
    pulled = step({"adapter": start}, "federation.algorithm=fedprox", "fedprox.mu=1e4")["adapter"]
    assert (pulled - start).norm() < (plain - start).norm()
    personal = step({"adapter": start + 1, "global": start}, "federation.algorithm=ditto", "ditto.mu=1e4")
    assert set(personal) == {"adapter", "global"} and not torch.equal(personal["global"], start)
    assert (personal["adapter"] - start).norm() < (start + 1 - start).norm()  # pulled towards the global adapter

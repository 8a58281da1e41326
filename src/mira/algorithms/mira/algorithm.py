"""The Mira algorithm (described, and its settings declared, in this package's __init__)."""

from __future__ import annotations

import logging
import math

import torch

from ...graph import GraphError, GraphEstimator, build_graph, family_graph, laplacian, max_degree
from ..base import Algorithm, write_trained_rows

log = logging.getLogger(__name__)


def laplacian_step(thetas: torch.Tensor, adjacency: torch.Tensor, step: float,
                   sampled: list[int] | torch.Tensor | None = None, only_sampled: bool = False,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """One MIRA server step: rows `sampled` (all if None) of Θ − step·L·Θ; other rows unchanged.

    thetas: (K × P), one flattened adapter per client. adjacency: (K × K) task-graph weights.
    step: η·λ. With `only_sampled`, L is the Laplacian of the graph among the sampled clients (the
    others neither pull nor count in a degree). The result goes into `out` (`thetas` itself for an
    in-place step) or, if None, a new tensor, `thetas` left untouched.
    """
    num_clients = thetas.shape[0]
    if adjacency.shape != (num_clients, num_clients):
        raise ValueError(f"adjacency has shape {tuple(adjacency.shape)}, expected ({num_clients}, {num_clients})")
    rows = torch.arange(num_clients) if sampled is None else torch.as_tensor(sampled, dtype=torch.long)
    adjacency = adjacency.to(thetas.dtype)
    if only_sampled:
        lap, cols, diagonal = laplacian(adjacency[rows][:, rows]), rows, torch.arange(len(rows))
    else:
        lap, cols, diagonal = laplacian(adjacency)[rows], torch.arange(num_clients), rows
    # Row i of (I − step·L) on `cols`: the weights of the adapters that make client rows[i]'s new one.
    mixing = -step * lap
    mixing[torch.arange(len(rows)), diagonal] += 1
    used = mixing.ne(0).any(dim=0)
    mixing, cols = mixing[:, used], cols[used]
    new_rows = _product(mixing, thetas if torch.equal(cols, torch.arange(num_clients)) else thetas[cols])
    out = thetas.clone() if out is None else out
    out[rows] = new_rows
    return out


def _product(mixing: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """mixing @ thetas, as a sparse product where `mixing` is mostly zeros (a sparse graph); a CPU
    sparse product costs about 8-10x a dense one per non-zero (benchmarks/server_step.py prints it:
    9.7x on AMD EPYC, 2 cores)."""
    if mixing.count_nonzero() * 8 < mixing.numel():
        return torch.sparse.mm(mixing.to_sparse(), thetas)
    return mixing @ thetas


def check_step(step: float, adjacency: torch.Tensor, force: bool = False) -> None:
    """Refuse η·λ·(max weighted degree) > 1 unless forced.

    Beyond that bound, θ_k − ηλ Σ a_kl (θ_k − θ_l) is no longer a convex combination of θ_k and its
    neighbours: the step overshoots and repeated rounds can diverge.
    """
    bound = step * max_degree(adjacency)
    if bound > 1 + 1e-9 and not force:
        raise GraphError(
            f"η·λ·(max weighted degree) = {step:g}·{max_degree(adjacency):g} = {bound:.3g} > 1: the MIRA "
            "server step would no longer be a convex combination of a client's adapter and its "
            "neighbours', and can diverge. Lower mira.eta or mira.lam, use mira.graph.normalize = true, "
            "or set mira.graph.force = true to run anyway.")
    if not math.isfinite(bound):
        raise GraphError(f"η·λ = {step} is not finite")


class Mira(Algorithm):
    """MIRA's server rule. `neighbours='sampled'` (default) lets only this round's sampled clients
    contribute, as in the paper's update and FedU; `'all'` uses the newest copy of every neighbour. With an `estimator`
    the graph is learned from the adapters during training (mira.graph.kind = 'learned')."""

    name = "mira"

    def __init__(self, adjacency: torch.Tensor, step: float, neighbours: str = "sampled",
                 estimator: GraphEstimator | None = None):
        if neighbours not in ("all", "sampled"):
            raise ValueError(f"neighbours must be 'all' or 'sampled', got {neighbours!r}")
        self.adjacency = adjacency
        self.step = step
        self.neighbours = neighbours
        self.estimator = estimator

    @classmethod
    def build(cls, cfg, clients, layout, initial_theta):
        """MIRA over the task graph of mira.graph (notes on it logged), its step η·λ checked against the
        graph; with mira.graph.kind = 'learned' the graph starts there and is estimated from the adapters."""
        families = [c.family for c in clients]
        fcfg = cfg.settings
        g = fcfg.graph
        adjacency, notes = build_graph(g, families, cfg.seed)
        for note in notes:
            log.warning(note)
        step = fcfg.eta * fcfg.lam
        check_step(step, adjacency, g.force)
        estimator = None
        if g.kind == "learned":
            estimator = GraphEstimator(adjacency, initial_theta, g.knn, g.threshold, g.update_every, g.smoothing,
                                       truth=family_graph(families))
        return cls(adjacency, step=step, neighbours=fcfg.neighbours, estimator=estimator)


    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.estimator is None:
            return {}
        return {"adjacency": self.estimator.adjacency, "graph_rounds": torch.tensor(self.estimator.rounds)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.estimator is not None:
            self.estimator.adjacency, self.estimator.rounds = state["adjacency"], int(state["graph_rounds"])

    def report(self) -> dict:
        return self.estimator.report() if self.estimator is not None else {}

    def aggregate(self, thetas, replies, num_examples) -> torch.Tensor:
        trained = write_trained_rows(thetas, replies)
        if self.estimator is not None:
            self.adjacency = self.estimator.update(trained)
        return laplacian_step(trained, self.adjacency, self.step, sorted(replies),
                              only_sampled=self.neighbours == "sampled", out=trained)

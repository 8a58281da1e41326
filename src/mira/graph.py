"""Task graphs: building, reading, validating, and the graph Laplacian used by MIRA's server step."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import MiraError

if TYPE_CHECKING:
    from .algorithms.mira import GraphSettings


class GraphError(MiraError):
    """The task graph is invalid; the message names the source and the problem."""


def uniform_graph(num_clients: int) -> torch.Tensor:
    """Complete graph, weight 1 on every pair of distinct clients."""
    return torch.ones(num_clients, num_clients) - torch.eye(num_clients)


def family_graph(families: list[str]) -> torch.Tensor:
    """Weight 1 between clients of the same family, 0 otherwise."""
    same = torch.tensor([[a == b for b in families] for a in families], dtype=torch.float32)
    return same - torch.eye(len(families))


def random_graph(num_clients: int, density: float, low: float, high: float, seed: int) -> torch.Tensor:
    """The paper's random task weights: each pair of distinct clients is an edge with probability
    `density`, its weight uniform in [low, high]; symmetric, zero diagonal, a function of `seed`."""
    generator = torch.Generator().manual_seed(seed)
    upper = torch.triu(torch.ones(num_clients, num_clients, dtype=torch.bool), diagonal=1)
    edges = (torch.rand(num_clients, num_clients, generator=generator) < density) & upper
    weights = low + (high - low) * torch.rand(num_clients, num_clients, generator=generator)
    half = torch.where(edges, weights, torch.zeros(()))
    return half + half.T


def read_graph(path: str | Path) -> torch.Tensor:
    """Read a square weight matrix from CSV (one row per line) or JSON (list of lists)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GraphError(f"{path}: cannot read graph file ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise GraphError(f"{path}: expected a JSON list of rows (list of lists of numbers)")
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    matrix = []
    for i, row in enumerate(rows, 1):
        try:
            matrix.append([float(v) for v in row])
        except (TypeError, ValueError):
            raise GraphError(f"{path}: row {i}: expected numbers, got {row!r}") from None
    if any(len(r) != len(matrix) for r in matrix):
        raise GraphError(f"{path}: matrix is not square ({len(matrix)} rows, row lengths "
                         f"{sorted({len(r) for r in matrix})})")
    return torch.tensor(matrix, dtype=torch.float32).reshape(len(matrix), len(matrix))


def validate_graph(adjacency: torch.Tensor, num_clients: int, source: str = "graph") -> tuple[torch.Tensor, list[str]]:
    """Check a task graph and return it (symmetrised if needed) with notes on what was changed.

    Requires a square K×K matrix of finite, non-negative weights with a zero diagonal.
    """
    a = adjacency.float()
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise GraphError(f"{source}: expected a square matrix, got shape {tuple(a.shape)}")
    if a.shape[0] != num_clients:
        raise GraphError(f"{source}: graph is {a.shape[0]}×{a.shape[0]} but there are {num_clients} clients")
    if not torch.isfinite(a).all():
        i, j = (~torch.isfinite(a)).nonzero()[0].tolist()
        raise GraphError(f"{source}: weight [{i}][{j}] is not finite ({a[i, j].item()})")
    if (a < 0).any():
        i, j = (a < 0).nonzero()[0].tolist()
        raise GraphError(f"{source}: weight [{i}][{j}] = {a[i, j].item()} is negative; weights must be >= 0")
    if (a.diagonal() != 0).any():
        i = int((a.diagonal() != 0).nonzero()[0])
        raise GraphError(f"{source}: diagonal weight [{i}][{i}] = {a[i, i].item()}; self-loops must be 0")
    notes = []
    if not torch.allclose(a, a.T):
        a = (a + a.T) / 2
        notes.append(f"{source}: matrix was not symmetric; using (A + Aᵀ)/2")
    return a, notes


def build_graph(cfg: GraphSettings, families: list[str], seed: int) -> tuple[torch.Tensor, list[str]]:
    """The task graph `cfg` names over clients of these task families, validated (and normalised if
    asked), and notes on it; a random graph is a function of `seed`."""
    k = len(families)
    if cfg.kind == "uniform" or (cfg.kind == "learned" and not cfg.path):
        adjacency, source = uniform_graph(k), "uniform graph"
    elif cfg.kind == "ground_truth":
        adjacency, source = family_graph(families), "ground-truth family graph"
    elif cfg.kind == "random":
        adjacency = random_graph(k, cfg.density, cfg.weight_min, cfg.weight_max, seed)
        source = f"random graph (density {cfg.density}, weights in [{cfg.weight_min}, {cfg.weight_max}])"
    else:
        adjacency, source = read_graph(cfg.path), cfg.path
    adjacency, notes = validate_graph(adjacency, k, source)
    return (normalize_graph(adjacency) if cfg.normalize else adjacency), notes


def laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """L = D − A, with D the diagonal matrix of weighted degrees."""
    return torch.diag(adjacency.sum(dim=1)) - adjacency


def max_degree(adjacency: torch.Tensor) -> float:
    return float(adjacency.sum(dim=1).max()) if adjacency.numel() else 0.0


def normalize_graph(adjacency: torch.Tensor) -> torch.Tensor:
    """Scale all weights so that the largest weighted degree is 1 (the graph's shape is kept)."""
    d = max_degree(adjacency)
    return adjacency / d if d > 0 else adjacency


def edge_precision_recall(estimated: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Precision and recall of the estimated graph's edges (weight > 0) against the true edges."""
    est, true = estimated > 0, truth > 0
    est.fill_diagonal_(False)
    hits = int((est & true).sum())
    return hits / max(int(est.sum()), 1), hits / max(int(true.sum()), 1)


def similarity_graph(thetas: torch.Tensor, initial: torch.Tensor, knn: int, threshold: float) -> torch.Tensor:
    """A task graph from the clients' adapters: cosine similarity of their updates θ_k − θ_0, negative
    similarities dropped, kept for each client's `knn` most similar others (or, with knn = 0, where it
    is at least `threshold`), symmetrised by the larger weight. Clients that have not trained yet
    (θ_k = θ_0) get no edges."""
    deltas = thetas - initial
    norms = deltas.norm(dim=1)
    unit = deltas / norms.clamp_min(1e-12)[:, None]
    sim = (unit @ unit.T).clamp_min(0)
    sim.fill_diagonal_(0)
    sim[norms == 0] = 0
    sim[:, norms == 0] = 0
    if knn > 0:
        keep = torch.zeros_like(sim, dtype=torch.bool)
        top = sim.topk(min(knn, len(sim) - 1), dim=1).indices
        keep.scatter_(1, top, True)
        sim = sim * keep
    else:
        sim = sim * (sim >= threshold)
    return torch.maximum(sim, sim.T)


class GraphEstimator:
    """MIRA's task graph learned during training from what the server holds anyway, the clients'
    adapters: re-estimated every `every` rounds with `similarity_graph` and smoothed,
    A ← (1 − smoothing)·A + smoothing·A_new, per client, once that client has trained (until then its
    edges stay those of the prior). Normalised to max weighted degree 1 when used."""

    def __init__(self, prior: torch.Tensor, initial: torch.Tensor, knn: int, threshold: float, every: int,
                 smoothing: float, truth: torch.Tensor | None = None):
        self.adjacency, self.initial = prior.clone(), initial
        self.knn, self.threshold, self.every, self.smoothing, self.truth = knn, threshold, every, smoothing, truth
        self.rounds = 0
        self.latest: torch.Tensor | None = None

    def update(self, thetas: torch.Tensor) -> torch.Tensor:
        """Count a round; when due, re-estimate from `thetas`. Returns the (normalised) graph to use."""
        self.rounds += 1
        if self.rounds % self.every == 0:
            self.latest = similarity_graph(thetas, self.initial, self.knn, self.threshold)
            trained = (thetas != self.initial).any(dim=1)
            both = trained[:, None] & trained[None, :]
            mixed = (1 - self.smoothing) * self.adjacency + self.smoothing * self.latest
            self.adjacency = torch.where(both, mixed, self.adjacency)
        return normalize_graph(self.adjacency)

    def report(self) -> dict:
        if self.latest is None:
            return {}
        out = {"learned_graph": normalize_graph(self.adjacency).tolist()}
        if self.truth is not None:
            precision, recall = edge_precision_recall(self.latest, self.truth)
            out |= {"edge_precision": precision, "edge_recall": recall}
        return out

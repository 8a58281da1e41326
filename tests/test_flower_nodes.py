"""The ServerApp's map of clients to Flower nodes, against a fake grid: nodes that went away are
skipped, a restarted node (new node id) takes over its client, misconfigured nodes are refused."""

from types import SimpleNamespace

import pytest
from flwr.common.constant import ErrorCode

import mira.flower.serverapp as server_app
from mira.config import load_config
from mira.flower.config_message import CONFIG, METRICS
from mira.flower.serverapp import FlowerBackend


class FakeGrid:
    """Nodes by id: (partition, client name) for a live node, or an error code for one that fails."""

    def __init__(self, nodes: dict[int, tuple[int, str] | int], num_clients: int = 2):
        self.nodes, self.num_clients = nodes, num_clients

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, timeout):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            held = self.nodes[node]
            meta = SimpleNamespace(src_node_id=node)
            if isinstance(held, int):
                error = SimpleNamespace(code=held, reason=f"error {held}")
                replies.append(SimpleNamespace(has_error=lambda: True, error=error, metadata=meta))
            else:
                content = {METRICS: {"partition-id": held[0], "num-clients": self.num_clients, "num-train": 8},
                           CONFIG: {"name": held[1], "family": "f"}}
                replies.append(SimpleNamespace(has_error=lambda: False, content=content, metadata=meta))
        return replies


@pytest.fixture(autouse=True)
def plain_messages(monkeypatch):
    """Messages outside a Flower run: only their destination matters to the fake grid."""
    monkeypatch.setattr(server_app, "Message", lambda content, dst_node_id, message_type:
                        SimpleNamespace(metadata=SimpleNamespace(dst_node_id=dst_node_id)))


def _backend(grid):
    cfg = load_config(None, ["model.name=tiny-random", "flower.connect_timeout=5", "flower.round_timeout=1"])
    return FlowerBackend(grid, cfg, layout=None)


def test_a_gone_node_is_skipped_and_a_restarted_node_takes_over():
    grid = FakeGrid({11: (0, "a"), 12: (1, "b"), 13: ErrorCode.NODE_UNAVAILABLE})
    backend = _backend(grid)
    clients = backend.connect()
    assert [c.name for c in clients] == ["a", "b"] and backend.nodes == {0: 11, 1: 12}
    grid.nodes = {11: (0, "a"), 14: (1, "b"), 15: (0, "stranger")}  # node 12 restarted as 14
    backend.refresh()
    assert backend.nodes == {0: 11, 1: 14}


def test_misconfigured_nodes_are_refused():
    with pytest.raises(ValueError, match="two nodes hold partition-id 0 .a and c."):
        _backend(FakeGrid({1: (0, "a"), 2: (0, "c"), 3: (1, "b")})).connect()
    with pytest.raises(ValueError, match="two nodes hold client 'a'"):
        _backend(FakeGrid({1: (0, "a"), 2: (1, "a")})).connect()
    with pytest.raises(RuntimeError, match="cannot hold a client"):
        _backend(FakeGrid({1: (0, "a"), 2: ErrorCode.CLIENT_APP_RAISED_EXCEPTION})).connect()
    restarted = _backend(FakeGrid({1: (0, "a"), 2: (1, "b"), 3: (1, "b")}))  # same client twice: the later wins
    restarted.connect()
    assert restarted.nodes == {0: 1, 1: 3}

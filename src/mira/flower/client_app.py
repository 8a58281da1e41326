"""The Flower ClientApp: one node holds one client (its `partition-id` from the node config), and
trains and evaluates it with the client module's own functions."""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..algorithms import ADAPTER
from ..client import ClientWorkspace, build_workspace, evaluate_client, train_client
from ..data import load_clients
from .transport import (ALL_ADAPTERS, CONFIG, METRICS, message_content, read_adapter, read_adapters, read_config,
                        read_message)

app = ClientApp()

_loaded: dict[tuple, tuple[ClientWorkspace, int]] = {}
"""The workspace and federation size of this process, kept while it lives (Simulation Engine actors are reused
across rounds; the Deployment Engine starts a process per message)."""


def _client(msg: Message, context: Context) -> tuple[ClientWorkspace, int, int]:
    """This node's workspace (model + its client's data, built from the server's configuration), the
    federation-wide index (partition id) of its client and the number of clients in the federation.

    Node config: `partition-id` (required), `num-partitions`, and where the data are: `data-path`
    (a copy of the whole dataset; the node picks its partition from it) or `client-data` (only this
    node's own data, which must make exactly one client; `num-partitions` is then required).
    """
    text, cfg = read_config(msg.content[CONFIG])
    node = context.node_config
    if "partition-id" not in node:
        raise ValueError("node config has no 'partition-id': start the SuperNode with "
                         "--node-config \"partition-id=K num-partitions=N\"")
    partition = int(node["partition-id"])
    data_path, own = str(node.get("data-path", "")), str(node.get("client-data", ""))
    if data_path and own:
        raise ValueError("node config has both data-path (a copy of the whole dataset) and client-data "
                         "(this node's own data); give one")
    key = (text, partition, data_path, own)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = _own_client(cfg, own, partition, node) if own else _shared_copy(cfg, data_path, partition, node)
    return _loaded[key][0], partition, _loaded[key][1]


def _shared_copy(cfg, data_path: str, partition: int, node) -> tuple[ClientWorkspace, int]:
    if data_path:
        cfg.data.path = data_path
    clients = load_clients(cfg.data, cfg.seed)
    if not 0 <= partition < len(clients):
        raise ValueError(f"partition-id {partition}: the data make {len(clients)} clients (0..{len(clients) - 1})")
    if "num-partitions" in node and int(node["num-partitions"]) != len(clients):
        raise ValueError(f"node config num-partitions = {node['num-partitions']}, "
                         f"but the data make {len(clients)} clients")
    return build_workspace(cfg, [clients[partition]], [partition]), len(clients)


def _own_client(cfg, path: str, partition: int, node) -> tuple[ClientWorkspace, int]:
    if "num-partitions" not in node:
        raise ValueError("node config has client-data but no 'num-partitions' (the number of clients in the federation)")
    if not 0 <= partition < int(node["num-partitions"]):
        raise ValueError(f"partition-id {partition} is outside 0..{int(node['num-partitions']) - 1}")
    cfg.data.path, cfg.data.tasks = path, []
    clients = load_clients(cfg.data, cfg.seed)
    if len(clients) != 1:
        raise ValueError(f"client-data {path}: the data make {len(clients)} clients "
                         f"({', '.join(c.name for c in clients)}) with data.partition = '{cfg.data.partition}'; "
                         "a node's own data must make exactly one")
    return build_workspace(cfg, clients, [partition]), int(node["num-partitions"])


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which client this node holds."""
    ws, k, num_clients = _client(msg, context)
    client = ws.clients[ws.position(k)]
    info = ConfigRecord({"name": client.name, "family": client.family})
    metrics = MetricRecord({"partition-id": k, "num-clients": num_clients, "num-train": len(client.train),
                            "num-test": len(client.test)})
    return Message(RecordDict({CONFIG: info, METRICS: metrics}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """This node's client step (its algorithm's, from the server's configuration) on what the server sent."""
    ws, k, _ = _client(msg, context)
    precision = ws.cfg.flower.precision
    received = read_message(msg.content, ws.slot.layout, precision)
    update = train_client(ws, k, received, int(msg.content[CONFIG]["round"]))
    metrics = MetricRecord({"partition-id": k, "train-loss": update.train_loss, "num-examples": update.num_examples})
    return Message(RecordDict(message_content(update.reply, ws.slot.layout, precision) | {METRICS: metrics}),
                   reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Validation and test loss of this client's adapter (and of everyone's, for the global loss), ROUGE-L."""
    ws, k, _ = _client(msg, context)
    precision = ws.cfg.flower.precision
    theta = read_adapter(msg.content[ADAPTER], ws.slot.layout, precision)
    everyone = read_adapters(msg.content[ALL_ADAPTERS], precision) if ALL_ADAPTERS in msg.content else None
    config = msg.content[CONFIG]
    result = evaluate_client(ws, k, theta, bool(config["generate"]), everyone, test=bool(config.get("test", True)))
    metrics = {"partition-id": k, "tokens": result.tokens}
    metrics |= {name: value for name, value in (("local-loss", result.local_loss), ("val-loss", result.val_loss))
                if value is not None}
    if result.column is not None:
        metrics["column"] = result.column
    metrics |= {name.replace("_", "-"): value for name, value in (result.scores or {}).items()}
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)

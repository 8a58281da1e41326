"""The Flower ClientApp: one node holds one client (its `partition-id` from the node config), and
trains and evaluates it with the client module's own functions.

The Deployment Engine starts a fresh process for every message, so what a message needs is loaded
when it needs it: the client's data and token ids come from the node cache (`mira.node_cache`) after
the first message of a run, and the query message that maps nodes to clients imports neither
transformers nor PEFT (with torch, most of a training message's start-up; see the README).
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .. import node_cache
from ..config import Config
from ..data import ClientData, load_clients
from ..errors import MiraError
from .config_message import CONFIG, METRICS, read_config

app = ClientApp()

_loaded: dict[tuple, object] = {}
"""This process's client data and workspace, kept while it lives (Simulation Engine actors are reused
across rounds; the Deployment Engine starts a process per message)."""


def _node_client(msg: Message, context: Context) -> tuple[tuple, Config, ClientData, int, int]:
    """This node's client, from the server's configuration and the node config: (cache key, config,
    the client's data, its federation-wide index (partition id), the number of clients).

    Node config: `partition-id` (required), `num-partitions`, and where the data are: `data-path`
    (a copy of the whole dataset; the node picks its partition from it) or `client-data` (only this
    node's own data, which must make exactly one client; `num-partitions` is then required).
    """
    text, cfg = read_config(msg.content[CONFIG])
    node = context.node_config
    if "partition-id" not in node:
        raise MiraError("node config has no 'partition-id': start the SuperNode with "
                         "--node-config \"partition-id=K num-partitions=N\"")
    partition = int(node["partition-id"])
    data_path, own = str(node.get("data-path", "")), str(node.get("client-data", ""))
    if data_path and own:
        raise MiraError("node config has both data-path (a copy of the whole dataset) and client-data "
                         "(this node's own data); give one")
    key = (text, partition, data_path, own)
    if ("data", key) not in _loaded:
        _loaded.clear()
        if own:
            cfg.data.path, cfg.data.tasks = own, []
        elif data_path:
            cfg.data.path = data_path
        build = (lambda: _own_client(cfg, partition, node)) if own else (lambda: _shared_copy(cfg, partition, node))
        _loaded["data", key] = (cfg, *node_cache.client_data(cfg, dict(node), build))
    cfg, client, num_clients = _loaded["data", key]
    return key, cfg, client, partition, num_clients


def _shared_copy(cfg: Config, partition: int, node) -> tuple[ClientData, int]:
    clients = load_clients(cfg.data, cfg.seed)
    if not 0 <= partition < len(clients):
        raise MiraError(f"partition-id {partition}: the data make {len(clients)} clients (0..{len(clients) - 1})")
    if "num-partitions" in node and int(node["num-partitions"]) != len(clients):
        raise MiraError(f"node config num-partitions = {node['num-partitions']}, "
                         f"but the data make {len(clients)} clients")
    return clients[partition], len(clients)


def _own_client(cfg: Config, partition: int, node) -> tuple[ClientData, int]:
    if "num-partitions" not in node:
        raise MiraError("node config has client-data but no 'num-partitions' (the number of clients in the federation)")
    if not 0 <= partition < int(node["num-partitions"]):
        raise MiraError(f"partition-id {partition} is outside 0..{int(node['num-partitions']) - 1}")
    clients = load_clients(cfg.data, cfg.seed)
    if len(clients) != 1:
        raise MiraError(f"client-data {cfg.data.path}: the data make {len(clients)} clients "
                         f"({', '.join(c.name for c in clients)}) with data.partition = '{cfg.data.partition}'; "
                         "a node's own data must make exactly one")
    return clients[0], int(node["num-partitions"])


def _client(msg: Message, context: Context):
    """This node's workspace (the model and its client's encoded data), its client's index, the number of clients."""
    from ..client import build_workspace, encode_client

    def cached_encoding(cfg, tokenizer, client):
        return node_cache.encoded_sets(cfg, tokenizer, client, lambda: encode_client(cfg, tokenizer, client))

    key, cfg, client, k, num_clients = _node_client(msg, context)
    if ("workspace", key) not in _loaded:
        _loaded["workspace", key] = build_workspace(cfg, [client], [k], encoder=cached_encoding)
    return _loaded["workspace", key], k, num_clients


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which client this node holds (from its data alone: no model is loaded)."""
    _, _, client, k, num_clients = _node_client(msg, context)
    info = ConfigRecord({"name": client.name, "family": client.family})
    metrics = MetricRecord({"partition-id": k, "num-clients": num_clients, "num-train": len(client.train),
                            "num-test": len(client.test)})
    return Message(RecordDict({CONFIG: info, METRICS: metrics}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """This node's client step (its algorithm's, from the server's configuration) on what the server sent."""
    from ..client import train_client
    from .transport import message_content, read_message

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
    from ..algorithms import ADAPTER
    from ..client import evaluate_client
    from .transport import ALL_ADAPTERS, read_adapter, read_adapters

    ws, k, _ = _client(msg, context)
    precision = ws.cfg.flower.precision
    # no adapter of its own when asked only for other adapters' losses (global-loss cells)
    theta = read_adapter(msg.content[ADAPTER], ws.slot.layout, precision) if ADAPTER in msg.content else None
    everyone = read_adapters(msg.content[ALL_ADAPTERS], precision) if ALL_ADAPTERS in msg.content else None
    config = msg.content[CONFIG]
    result = evaluate_client(ws, k, theta, bool(config["generate"]), everyone, test=bool(config.get("test", True)),
                             losses=bool(config.get("losses", True)))
    metrics = {"partition-id": k, "tokens": result.tokens}
    metrics |= {name: value for name, value in (("local-loss", result.local_loss), ("val-loss", result.val_loss))
                if value is not None}
    if result.column is not None:
        metrics["column"] = result.column
    if result.scores is not None:
        metrics |= {name.replace("_", "-"): value for name, value in result.scores.items()}
        metrics["generate-seconds"] = result.generate_seconds
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)

"""The Flower ClientApp: one node holds one client (its `partition-id` from the node config),
trains and evaluates it with the simulator's own functions."""

from __future__ import annotations

import dataclasses

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from ..simulation import Federation, build_federation, evaluate_client, train_client
from .transport import (ADAPTER, ALL_ADAPTERS, CONFIG, GLOBAL, METRICS, adapter_record, read_adapter, read_adapters,
                        read_config, read_plan)

app = ClientApp()

_loaded: dict[tuple, Federation] = {}
"""The model and data of this process, kept while it lives (Simulation Engine actors are reused
across rounds; the Deployment Engine starts a process per message)."""


def _client(msg: Message, context: Context) -> tuple[Federation, int]:
    """This node's federation (model + data, built from the server's configuration) and the
    federation-wide index (partition id) of its client.

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
    return _loaded[key], partition


def _shared_copy(cfg, data_path: str, partition: int, node) -> Federation:
    if data_path:
        cfg.data.path = data_path
    fed = build_federation(cfg)
    if not 0 <= partition < len(fed.clients):
        raise ValueError(f"partition-id {partition}: the data make {len(fed.clients)} clients (0..{len(fed.clients) - 1})")
    if "num-partitions" in node and int(node["num-partitions"]) != len(fed.clients):
        raise ValueError(f"node config num-partitions = {node['num-partitions']}, "
                         f"but the data make {len(fed.clients)} clients")
    return fed


def _own_client(cfg, path: str, partition: int, node) -> Federation:
    if "num-partitions" not in node:
        raise ValueError("node config has client-data but no 'num-partitions' (the number of clients in the federation)")
    if not 0 <= partition < int(node["num-partitions"]):
        raise ValueError(f"partition-id {partition} is outside 0..{int(node['num-partitions']) - 1}")
    cfg.data.path, cfg.data.tasks = path, []
    fed = build_federation(cfg)
    if len(fed.clients) != 1:
        raise ValueError(f"client-data {path}: the data make {len(fed.clients)} clients "
                         f"({', '.join(c.name for c in fed.clients)}) with data.partition = '{cfg.data.partition}'; "
                         "a node's own data must make exactly one")
    return dataclasses.replace(fed, offset=partition)


@app.query()
def describe(msg: Message, context: Context) -> Message:
    """Tell the server which client this node holds."""
    fed, k = _client(msg, context)
    client = fed.clients[k - fed.offset]
    info = ConfigRecord({"name": client.name, "family": client.family})
    num_clients = int(context.node_config.get("num-partitions", len(fed.clients)))
    metrics = MetricRecord({"partition-id": k, "num-clients": num_clients, "num-train": len(client.train),
                            "num-test": len(client.test)})
    return Message(RecordDict({CONFIG: info, METRICS: metrics}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of this node's client from the adapter the server sent."""
    fed, k = _client(msg, context)
    precision = fed.cfg.flower.precision
    layout = fed.slot.layout
    theta = read_adapter(msg.content[ADAPTER], layout, precision)
    global_theta = read_adapter(msg.content[GLOBAL], layout, precision) if GLOBAL in msg.content else None
    update = train_client(fed, k, theta, int(msg.content[CONFIG]["round"]), read_plan(msg.content[CONFIG]), global_theta)
    metrics = MetricRecord({"partition-id": k, "train-loss": update.train_loss, "num-examples": update.num_examples})
    reply = RecordDict({ADAPTER: adapter_record(update.theta, layout, precision), METRICS: metrics})
    if update.global_theta is not None:
        reply[GLOBAL] = adapter_record(update.global_theta, layout, precision)
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Validation and test loss of this client's adapter (and of everyone's, for the global loss), ROUGE-L."""
    fed, k = _client(msg, context)
    precision = fed.cfg.flower.precision
    theta = read_adapter(msg.content[ADAPTER], fed.slot.layout, precision)
    everyone = read_adapters(msg.content[ALL_ADAPTERS], precision) if ALL_ADAPTERS in msg.content else None
    config = msg.content[CONFIG]
    result = evaluate_client(fed, k, theta, bool(config["generate"]), everyone, test=bool(config.get("test", True)))
    metrics = {"partition-id": k, "tokens": result.tokens}
    metrics |= {name: value for name, value in (("local-loss", result.local_loss), ("val-loss", result.val_loss))
                if value is not None}
    if result.column is not None:
        metrics["column"] = result.column
    metrics |= {name.replace("_", "-"): value for name, value in (result.scores or {}).items()}
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)

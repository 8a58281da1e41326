"""The Flower ServerApp: the shared round loop (`mira.rounds`) with clients on Flower nodes.

Run config (pyproject `[tool.flwr.app.config]`, overridden by `flwr run --run-config`):
`config` (a mira TOML file; empty = defaults), `overrides` (`key=value` pairs separated by `;`),
`out-dir` (absolute; the SuperLink's working directory is not yours), `resume`, `overwrite`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp

from ..algorithms import ADAPTER, algorithm_class, build_algorithm
from ..client import ClientEvaluation, ClientUpdate, build_model
from ..config import Config, ConfigError, load_config
from ..data import ClientData
from ..errors import MiraError
from ..lora import AdapterLayout
from ..rounds import RunResult, check_run_dir, run_federation, traffic
from .config_message import CONFIG, METRICS, config_record
from .transport import ALL_ADAPTERS, adapter_record, adapters_record, message_content, message_sizes, read_message

log = logging.getLogger(__name__)
app = ServerApp()


@dataclass
class FlowerBackend:
    """Clients on Flower nodes: each sampled client gets its own adapter in a message to the node
    holding its partition; replies are mapped back by partition id, never by Flower's node id."""

    grid: Grid
    cfg: Config
    layout: AdapterLayout
    nodes: dict[int, int] = field(default_factory=dict)
    """partition id → node id"""
    names: list[str] = field(default_factory=list)
    train_sizes: list[int] = field(default_factory=list)

    def _query(self, node_ids: list[int], timeout: float) -> list[tuple[int, int, int, str, str, int]]:
        """Ask these nodes which client they hold: (node id, partition, number of clients, name,
        family, training examples) for each that answered. A node that went away (unavailable, crashed) is skipped; one
        whose ClientApp cannot load its client is an error, since waiting will not fix it."""
        content = RecordDict({CONFIG: config_record(self.cfg, 0)})
        messages = [Message(content, dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
        answers = []
        for reply in self.grid.send_and_receive(messages, timeout=timeout) if messages else ():
            node = reply.metadata.src_node_id
            if reply.has_error():
                if reply.error.code in (ErrorCode.LOAD_CLIENT_APP_EXCEPTION, ErrorCode.CLIENT_APP_RAISED_EXCEPTION):
                    raise RuntimeError(f"node {node} cannot hold a client: {reply.error.reason}")
                log.warning("node %s did not answer (%s); asking again later", node, reply.error.reason)
                continue
            metrics, info = reply.content[METRICS], reply.content[CONFIG]
            answers.append((node, int(metrics["partition-id"]), int(metrics["num-clients"]), str(info["name"]),
                            str(info["family"]), int(metrics["num-train"])))
        return answers

    def connect(self) -> list[ClientData]:
        """Ask every node which client it holds, until every partition has a node (flower.connect_timeout).
        A node that restarted (a new node id for a client already found) replaces its predecessor."""
        deadline = time.monotonic() + self.cfg.flower.connect_timeout
        found: dict[int, tuple[str, str, int]] = {}
        expected = None
        while expected is None or len(found) < expected:
            if time.monotonic() > deadline:
                missing = sorted(set(range(expected or 0)) - set(found)) or "all"
                raise TimeoutError(f"no node answered for partitions {missing} within "
                                   f"flower.connect_timeout = {self.cfg.flower.connect_timeout} s")
            new = [n for n in self.grid.get_node_ids() if n not in self.nodes.values()]
            for node, partition, count, name, family, train in self._query(new, max(1.0, deadline - time.monotonic())):
                if expected is not None and count != expected:
                    raise MiraError(f"nodes disagree on the number of clients ({expected} and {count}); "
                                     "check num-partitions and the data on every SuperNode")
                expected = count
                if partition in found and found[partition][0] != name:
                    raise MiraError(f"two nodes hold partition-id {partition} ({found[partition][0]} and {name}); "
                                     "give every SuperNode its own")
                if any(n == name and p != partition for p, (n, _, _) in found.items()):
                    raise MiraError(f"two nodes hold client {name!r}; each client's data must be on one node only")
                if partition in found:
                    log.warning("client %s: node %s replaces node %s (restarted)", name, node, self.nodes[partition])
                self.nodes[partition] = node
                found[partition] = (name, family, train)
            if expected is None or len(found) < expected:
                time.sleep(1.0)
        self.names = [found[k][0] for k in range(expected)]
        self.train_sizes = [found[k][2] for k in range(expected)]
        log.info("%d clients connected: %s", expected, ", ".join(self.names))
        return [ClientData(name, family, [], []) for name, family, _ in (found[k] for k in range(expected))]

    def refresh(self) -> None:
        """Map nodes that appeared since the last round: a restarted SuperNode comes back with a new node
        id, and takes over its client's partition; a node holding no client of this federation is ignored."""
        new = [n for n in self.grid.get_node_ids() if n not in self.nodes.values()]
        for node, partition, count, name, *_ in self._query(new, self.cfg.flower.round_timeout):
            if count != len(self.names) or not 0 <= partition < count or self.names[partition] != name:
                log.warning("node %s holds client %s as partition %d of %d, not one of this federation's; ignored",
                            node, name, partition, count)
                continue
            log.info("client %s is now on node %s (was %s)", name, node, self.nodes.get(partition))
            self.nodes[partition] = node

    def _exchange(self, kind: str, contents: dict[int, RecordDict], when: str) -> dict[int, Message]:
        """Send one message per client, wait up to flower.round_timeout, return the good replies by
        client; clients that failed or did not answer are logged and left out."""
        messages = [Message(content, dst_node_id=self.nodes[k], message_type=kind) for k, content in contents.items()]
        replies = {r.metadata.src_node_id: r for r in self.grid.send_and_receive(messages, timeout=self.cfg.flower.round_timeout)}
        good = {}
        for k in contents:
            reply = replies.get(self.nodes[k])
            if reply is None:
                log.warning("%s: client %s did not reply to %s within %.0f s; skipped", when, self.names[k],
                            kind, self.cfg.flower.round_timeout)
            elif reply.has_error():
                log.warning("%s: client %s failed in %s (%s); skipped", when, self.names[k], kind,
                            reply.error.reason)
            else:
                good[k] = reply
        if len(good) < min(self.cfg.flower.min_replies, len(contents)):
            raise RuntimeError(f"{when}: {len(good)} of {len(contents)} clients replied to {kind}, fewer than "
                               f"flower.min_replies = {self.cfg.flower.min_replies}; the last checkpoint is intact")
        return good

    def train(self, sent, round_, optimizer_states, progress, on_step=None):
        self.refresh()
        precision = self.cfg.flower.precision
        contents = {k: RecordDict(message_content(message, self.layout, precision) | {CONFIG: config_record(self.cfg, round_)})
                    for k, message in sent.items()}
        updates, received = [], []
        for k, reply in self._exchange(MessageType.TRAIN, contents, f"round {round_}").items():
            received.append(message_sizes(reply.content))
            try:
                returned = read_message(reply.content, self.layout, precision)
            except (KeyError, ValueError) as exc:
                log.warning("round %d: rejected the reply of client %s (%s)", round_, self.names[k], exc)
                continue
            metrics = reply.content[METRICS]
            updates.append(ClientUpdate(k, returned, int(metrics["num-examples"]), float(metrics["train-loss"])))
        private = algorithm_class(self.cfg.federation.algorithm).private
        return updates, traffic([message_sizes(c) for c in contents.values()], received, private)

    def evaluate(self, thetas: torch.Tensor, clients: list[int], generate: bool, test: bool,
                 cross: dict[int, torch.Tensor], known: frozenset[int] = frozenset(),
                 answered: frozenset[int] = frozenset()) -> dict[int, ClientEvaluation]:
        self.refresh()
        precision = self.cfg.flower.precision
        contents = {}
        for k in clients:
            losses, answers = k not in known, generate and k not in answered
            own = {ADAPTER: adapter_record(thetas[k], self.layout, precision)} if losses or answers else {}
            contents[k] = RecordDict(own | {CONFIG: config_record(self.cfg, 0, answers, test=test, losses=losses)}
                                     | ({ALL_ADAPTERS: adapters_record(cross[k], precision)} if k in cross else {}))
        evaluations = {}
        for k, reply in self._exchange(MessageType.EVALUATE, contents, "evaluation").items():
            m = reply.content[METRICS]
            scores = {"rouge_l": float(m["rouge-l"]), "exact_match": float(m["exact-match"])} if "rouge-l" in m else None
            evaluations[k] = ClientEvaluation(float(m["local-loss"]) if "local-loss" in m else None, int(m["tokens"]),
                                              [float(v) for v in m["column"]] if "column" in m else None, scores,
                                              float(m["val-loss"]) if "val-loss" in m else None,
                                              float(m["generate-seconds"]) if "generate-seconds" in m else 0.0)
        return evaluations


def run_on_grid(grid: Grid, cfg: Config, resume: bool = False, overwrite: bool = False) -> RunResult:
    """A federated run with the clients on the nodes of `grid`; writes the same run directory as `mira run`."""
    if cfg.train.persistent_optimizer:
        raise ConfigError("train.persistent_optimizer is not supported on Flower nodes (they keep no state)")
    if cfg.privacy.clip > 0 and algorithm_class(cfg.federation.algorithm).private:
        raise ConfigError(f"privacy: {cfg.federation.algorithm}'s clients keep private state, which Flower nodes "
                          "(stateless) would send to the server un-noised; use it with privacy in the simulator only")
    check_run_dir(cfg, overwrite, resume)
    _, _, slot = build_model(cfg)  # the layout and the initial adapter every client starts from
    layout, initial_theta = slot.layout, slot.get()
    backend = FlowerBackend(grid, cfg, layout)
    clients = backend.connect()
    log.info("writing the run to %s", cfg.run_dir.resolve())
    return run_federation(cfg, clients, layout, initial_theta, build_algorithm(cfg, clients, layout, initial_theta),
                          backend, progress=False, resume=resume)


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_config = context.run_config
    overrides = [item.strip() for item in str(run_config.get("overrides", "")).split(";") if item.strip()]
    cfg = load_config(str(run_config.get("config", "")) or None, overrides)
    if run_config.get("out-dir"):
        cfg.out_dir = str(run_config["out-dir"])
    run_on_grid(grid, cfg, resume=bool(run_config.get("resume", False)), overwrite=bool(run_config.get("overwrite", False)))

"""Chaos soak on a loopback Flower Deployment Engine: 8 SuperNodes, 10 MIRA rounds on the tiny model,
while a chaos loop kills and restarts random SuperNodes (of the "target" half) and once kills the
ServerApp itself, which is then resumed from its checkpoint. Afterwards the run must be complete, no
adapter lost, and the adapters must equal a simulator run in which the same clients missed the same
rounds (read from the run's metrics): exactly so for the clients never hit.

    python benchmarks/flower_soak.py            # about 15-30 minutes on 2 cores; prints the verdict

Bounded: 10 rounds, at most `--kills` node kills, one ServerApp kill, loopback addresses only.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from safetensors.torch import load_file

from mira.algorithms import build_algorithm
from mira.client import build_workspace
from mira.config import load_config
from mira.flower.loopback import Loopback
from mira.rounds import run_federation
from mira.simulation import InProcess

ROOT = Path(__file__).resolve().parents[1]
NODES, ROUNDS = 8, 10
TASKS = ["reverse_words", "sort_words", "rotate_words", "add", "difference", "maximum", "sentiment", "topic"]
OVERRIDES = (f"model.name=tiny-random; data.tasks={json.dumps(TASKS)}; data.train_per_client=16; "
             f"data.test_per_client=4; data.val_per_client=4; federation.rounds={ROUNDS}; "
             "federation.sample_fraction=1.0; train.local_steps=2; train.batch_size=8; eval.eval_every=5; eval.global_loss=false; "
             "eval.generate_per_client=0; flower.round_timeout=45; flower.min_replies=1; flower.connect_timeout=900; "
             "name=soak")
TARGETS = list(range(NODES // 2, NODES))  # only these nodes are ever killed


class MissedRounds(InProcess):
    """The simulator with the clients that missed a round on Flower dropped from that round."""

    def __init__(self, ws, missed: dict[int, set[int]]):
        super().__init__(ws)
        self.missed = missed

    def train(self, sent, round_, optimizer_states, progress, on_step=None):
        kept = {k: message for k, message in sent.items() if k not in self.missed.get(round_, set())}
        return super().train(kept, round_, optimizer_states, progress, on_step)


def chaos(federation: Loopback, stop: threading.Event, kills: int, rng: random.Random, log: list[str]) -> None:
    """Kill a random target SuperNode every few seconds and restart it a little later."""
    for _ in range(kills):
        if stop.wait(rng.uniform(6, 15)):
            return
        k = rng.choice(TARGETS)
        if f"node{k}" in federation.processes:
            federation.kill_node(k)
            log.append(f"{time.strftime('%H:%M:%S')} killed node {k}")
            if stop.wait(rng.uniform(2, 8)):
                federation.start_node(k)
                return
            federation.start_node(k)
            log.append(f"{time.strftime('%H:%M:%S')} restarted node {k}")


def kill_server_app(log: list[str]) -> bool:
    found = subprocess.run(["pkill", "-9", "-f", "flwr-serverapp"], capture_output=True)
    log.append(f"{time.strftime('%H:%M:%S')} killed the ServerApp (pkill exit {found.returncode})")
    return found.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=6, help="SuperNode kills at most")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chaos schedule")
    parser.add_argument("--check", metavar="DIR", help="only compare the finished soak in DIR with the simulator")
    args = parser.parse_args()
    if args.check:
        check(Path(args.check))
        return
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="mira-soak-"))
    out, events = root / "runs", []
    begin = time.monotonic()
    with Loopback(root / "deployment", num_nodes=NODES) as federation:
        stop = threading.Event()
        chaos_thread = threading.Thread(target=chaos, args=(federation, stop, args.kills, rng, events))
        chaos_thread.start()
        first = federation.start_run(ROOT, {"overrides": OVERRIDES, "out-dir": str(out)})
        first_output: list[str] = []
        drain = threading.Thread(target=lambda: first_output.extend(first.stdout))  # keep its pipe from filling
        drain.start()
        checkpoint = out / "soak" / "checkpoint.safetensors"
        while first.poll() is None and not (checkpoint.exists() and _round(out) >= 4):
            time.sleep(0.5)
        server_killed = first.poll() is None and kill_server_app(events)
        try:
            first.wait(timeout=60)
        except subprocess.TimeoutExpired:  # `flwr run --stream` may keep waiting on the dead run
            first.kill()
            first.wait()
        drain.join()
        resumed = federation.start_run(ROOT, {"overrides": OVERRIDES, "out-dir": str(out), "resume": True})
        output, _ = resumed.communicate(timeout=3600)
        stop.set()
        chaos_thread.join()
    if not (out / "soak" / "adapters").is_dir():
        raise SystemExit("the run did not finish; first run:\n" + "".join(first_output)[-4000:]
                         + "\nresumed run:\n" + output[-4000:])
    (root / "events.txt").write_text("\n".join(events + [f"ServerApp killed and resumed: {server_killed}",
                                                          f"wall time {time.monotonic() - begin:.0f} s"]) + "\n")
    check(root)


def check(root: Path) -> None:
    """Compare the soak's adapters with a simulator run in which the same clients missed the same rounds."""
    out = root / "runs"

    records = [json.loads(line) for line in (out / "soak" / "metrics.jsonl").read_text().splitlines()]
    names = [c["name"] for c in json.loads((out / "soak" / "clients.json").read_text())]
    missed = {r["round"]: {names.index(n) for n in r["sampled"] if n not in r.get("train_loss", {})}
              for r in records if r["round"] > 0}
    hit = {names[k] for k in TARGETS}
    cfg = load_config(None, OVERRIDES.split("; ") + [f"out_dir='{root / 'sim'}'"])
    ws = build_workspace(cfg)
    rule = build_algorithm(cfg, ws.clients, ws.slot.layout, ws.initial_theta)
    expected = run_federation(cfg, ws.clients, ws.slot.layout, ws.initial_theta, rule, MissedRounds(ws, missed),
                              progress=False).run_dir
    diffs = {}
    for name in names:
        got = load_file(out / "soak" / "adapters" / f"{name}.safetensors")
        want = load_file(expected / "adapters" / f"{name}.safetensors")
        diffs[name] = max(float((got[key] - want[key]).abs().max()) for key in want)
    print((root / "events.txt").read_text() if (root / "events.txt").exists() else "(no event log)")
    print(f"rounds recorded: {[r['round'] for r in records]} (complete: {[r['round'] for r in records] == list(range(ROUNDS + 1))})")
    print("missed (round: clients): "
          + ", ".join(f"{r}: {sorted(names[k] for k in ks)}" for r, ks in missed.items() if ks))
    print(f"adapters on disk: {len(list((out / 'soak' / 'adapters').glob('*.safetensors')))} of {len(names)}")
    print("max |Flower - simulator| per client: " + ", ".join(f"{n} {d:.1e}" for n, d in diffs.items()))
    untouched = max(d for n, d in diffs.items() if n not in hit)
    print(f"never-hit clients equal to the simulator with the same missed rounds: {untouched <= 1e-5} "
          f"(max {untouched:.1e}); logs in {root}")


def _round(out: Path) -> int:
    path = out / "soak" / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return json.loads(lines[-1])["round"] if lines else -1
    except json.JSONDecodeError:
        return -1


if __name__ == "__main__":
    main()

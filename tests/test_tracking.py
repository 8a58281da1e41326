"""TensorBoard event files of a run, read back with TensorBoard's own event reader, and the
per-round log line for logs."""

import logging

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mira.simulation import run


def test_tensorboard_finds_a_runs_event_files(tiny_config, caplog):
    cfg = tiny_config("name=tb", "mira.graph.kind=learned", "federation.sample_fraction=1.0", "federation.rounds=2")
    with caplog.at_level(logging.INFO, logger="mira.tracking"):
        result = run(cfg, progress=False)
    events = EventAccumulator(str(cfg.run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    names = [c.name for c in result.clients]
    local_steps = EventAccumulator(str(cfg.run_dir / "tensorboard" / "local_steps"), size_guidance={"scalars": 0})
    local_steps.Reload()
    steps = [e.step for e in local_steps.Scalars(f"train_loss/{names[0]}")]
    assert steps == list(range(1, 2 * cfg.train.local_steps + 1))  # every local step of both rounds
    local = events.Scalars("mean_local_loss")
    assert [e.step for e in local] == [0, 1, 2]
    assert abs(local[-1].value - result.history[-1]["mean_local_loss"]) < 1e-6
    assert {f"local_loss/{n}" for n in names} <= set(tags["scalars"]) and "mean_val_loss" in tags["scalars"]
    assert "learned_graph" in tags["images"] and len(events.Images("learned_graph")) == 2
    # pytest's output is no terminal: one line per round with time, training loss and ETA
    lines = [r.getMessage() for r in caplog.records if r.name == "mira.tracking"]
    assert len(lines) == 2 and lines[0].startswith("round 1/2 done in") and "ETA" in lines[0]

"""Checkpoint/resume, PEFT export and run-directory errors."""

import json
import random
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mira.checkpoint import CHECKPOINT, load_checkpoint
from mira.cli import main
from mira.config import ConfigError, resume_config
from mira.export import RunModel
from mira.simulation import run

TINY = ["model.name=tiny-random", "data.train_per_client=16", "data.test_per_client=8", "train.local_steps=3",
        "train.batch_size=4", "train.lr=0.05", "eval.eval_every=1", "eval.generate_per_client=2",
        "eval.max_new_tokens=4", "device=cpu", "train.persistent_optimizer=true", "federation.rounds=8"]


def _cli(tmp_path, *extra):
    args = [sys.executable, "-m", "mira.cli", "run", "--no-progress", "--set", f"out_dir='{tmp_path}'"]
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def _comparable(run_dir):
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]  # all but timings


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    subprocess.run(_cli(tmp_path, "name=full"), check=True, capture_output=True, timeout=300)
    proc = subprocess.Popen(_cli(tmp_path, "name=cut"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "cut" / CHECKPOINT).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.4))
        assert proc.poll() is None, "the run ended before it could be killed; make it longer"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    killed_at = load_checkpoint(tmp_path / "cut").round
    assert killed_at < 8
    subprocess.run([sys.executable, "-m", "mira.cli", "run", "--no-progress", "--resume", str(tmp_path / "cut")],
                   check=True, capture_output=True, timeout=300)
    assert _comparable(tmp_path / "cut") == _comparable(tmp_path / "full")
    for name in json.loads((tmp_path / "full" / "clients.json").read_text()):
        for folder in ("adapters", "adapters/selected"):  # the final and the validation-selected adapters
            a = load_file(tmp_path / "full" / folder / f"{name['name']}.safetensors")
            b = load_file(tmp_path / "cut" / folder / f"{name['name']}.safetensors")
            assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    csv_rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert csv_rows == (tmp_path / "full" / "metrics.csv").read_text().splitlines()


def test_resume_refuses_a_different_config(tiny_config, tmp_path):
    cfg = tiny_config("name=r", "federation.rounds=1")
    run(cfg, progress=False)
    extended = resume_config(cfg.run_dir, ["federation.rounds=2"])
    assert extended.federation.rounds == 2 and extended.run_dir == cfg.run_dir
    with pytest.raises(ConfigError, match="train.lr: saved 0.05, now 0.1"):
        resume_config(cfg.run_dir, ["train.lr=0.1"])
    with pytest.raises(ConfigError, match="not a mira run directory"):
        resume_config(tmp_path / "nothing")
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    before = (cfg.run_dir / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(cfg.run_dir), "--set", "mira.lam=0.1"]) == 2
    assert (cfg.run_dir / "metrics.jsonl").read_text() == before  # nothing overwritten


def test_resume_extends_a_finished_run(tiny_config):
    cfg = tiny_config("name=x", "federation.rounds=1")
    run(cfg, progress=False)
    result = run(resume_config(cfg.run_dir, ["federation.rounds=2"]), progress=False, resume=True)
    assert [r["round"] for r in result.history] == [0, 1, 2]
    assert load_checkpoint(cfg.run_dir).round == 2


def test_generate_command_and_unknown_client(tiny_config, capsys):
    cfg = tiny_config("name=g")
    run(cfg, progress=False)
    assert main(["generate", str(cfg.run_dir), "--client", "0", "--max-new-tokens", "3", "Add 2 and 3"]) == 0
    expected = RunModel(cfg.run_dir).generate(0, "Add 2 and 3", max_new_tokens=3)
    assert capsys.readouterr().out == expected + "\n"
    assert main(["generate", str(cfg.run_dir), "--client", "nobody", "hi"]) == 2
    assert "no client 'nobody'" in capsys.readouterr().err

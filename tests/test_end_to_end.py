import json
import tomllib
from pathlib import Path

import torch

from mira.cli import main
from mira.client import build_workspace
from mira.config import load_config
from mira.lora import load_adapter
from mira.rounds import sample_clients
from mira.simulation import run


def test_tiny_run_lowers_local_loss_and_writes_results(tiny_config):
    cfg = tiny_config("federation.rounds=3", "federation.sample_fraction=1.0", "name=e2e")
    ws = build_workspace(cfg)
    result = run(cfg, progress=False, ws=ws)
    first, last = result.history[0], result.history[-1]
    assert last["mean_local_loss"] < 0.8 * first["mean_local_loss"]
    assert last["mean_global_loss"] < first["mean_global_loss"]
    # files: config that reloads to the same values, metrics per round, adapters per client
    assert load_config(result.run_dir / "config.toml") == cfg
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in lines] == [0, 1, 2, 3]
    csv_rows = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 4 * len(ws.clients)
    for k, client in enumerate(ws.clients):
        saved = load_adapter(result.run_dir / "adapters" / f"{client.name}.safetensors", ws.slot.layout)
        assert torch.equal(saved, result.thetas[k])
    # MIRA personalises: adapters differ between clients
    assert not torch.equal(result.thetas[0], result.thetas[1])


def test_mira_with_lambda_zero_equals_local_end_to_end(tiny_config):
    mira = run(tiny_config("name=m", "mira.lam=0"), progress=False)
    local = run(tiny_config("name=l", "federation.algorithm=local"), progress=False)
    assert torch.equal(mira.thetas, local.thetas)
    assert mira.history[-1]["local_loss"] == local.history[-1]["local_loss"]


def test_fedit_gives_every_client_the_same_adapter(tiny_config):
    result = run(tiny_config("name=f", "federation.algorithm=fedit"), progress=False)
    assert all(torch.equal(result.thetas[0], row) for row in result.thetas)
    assert result.history[-1]["bytes_up"] > 0


def test_same_seed_same_numbers(tiny_config):
    a = run(tiny_config("name=a"), progress=False)
    b = run(tiny_config("name=b"), progress=False)
    assert torch.equal(a.thetas, b.thetas)


def test_sampling_is_seeded_and_sized():
    assert sample_clients(80, 0.1, 0, seed=0, round_=1) == sample_clients(80, 0.1, 0, seed=0, round_=1)
    assert len(sample_clients(80, 0.1, 0, seed=0, round_=1)) == 8
    assert len(sample_clients(5, 0.01, 0, seed=0, round_=1)) == 1
    assert len(sample_clients(9, 0.5, 3, seed=0, round_=1)) == 3


def test_cli_run_and_errors(tmp_path, capsys):
    args = ["run", "--no-progress", "--set", "model.name=tiny-random", "--set", f"out_dir='{tmp_path}'",
            "--set", "federation.rounds=1", "--set", "train.local_steps=1", "--set", "name=cli",
            "--set", "data.train_per_client=8", "--set", "data.test_per_client=4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reverse_words" in out and "mean" in out
    assert (tmp_path / "cli" / "metrics.csv").exists()
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", "--set", "train.bogus=1"]) == 2
    assert "unknown key 'train.bogus'" in capsys.readouterr().err
    assert main(args + ["--set", "name=g", "--set", "mira.graph.kind=file", "--set", f"mira.graph.path='{tmp_path}/g.csv'"]) == 2
    assert "cannot read graph file" in capsys.readouterr().err
    (tmp_path / "g2.csv").write_text("0,1\n1,0\n")
    before = (tmp_path / "cli" / "metrics.jsonl").read_text()
    assert main(args + ["--overwrite", "--set", "mira.graph.kind=file", "--set", f"mira.graph.path='{tmp_path}/g2.csv'"]) == 2
    assert "graph is 2×2 but there are 9 clients" in capsys.readouterr().err
    assert (tmp_path / "cli" / "metrics.jsonl").read_text() == before  # nothing overwritten


def test_config_command_prints_toml(capsys):
    assert main(["config", "--set", "mira.lam=0.3"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["mira"]["lam"] == 0.3


def test_cli_on_natural_instructions_fixtures_reports_rouge(tmp_path, capsys):
    fixtures = Path(__file__).parent / "fixtures"
    args = ["run", "--no-progress", "--set", "model.name=tiny-random", "--set", f"out_dir='{tmp_path}'",
            "--set", "data.source=natural_instructions", "--set", f"data.path='{fixtures / 'ni'}'",
            "--set", "data.train_per_client=6", "--set", "data.test_per_client=3", "--set", "mira.graph.kind=ground_truth",
            "--set", "federation.rounds=1", "--set", "train.local_steps=1", "--set", "eval.max_new_tokens=4",
            "--set", "model.max_length=256"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rougeL@0" in out and "rougeL@1" in out and "EM@1" in out and "task002_currency" in out
    last = json.loads((tmp_path / "default" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(last["rouge_l"]) == {"task001_capital", "task002_currency", "task003_sentiment"}
    assert all(0.0 <= v <= 1.0 for v in last["rouge_l"].values())

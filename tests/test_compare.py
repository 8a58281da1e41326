import csv
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from mira.callbacks import evaluation_part
from mira.cli import main
from mira.comparison import compare
from mira.config import load_config
from mira.export import RunModel
from mira.results import archive_run

TINY = ["model.name=tiny-random", "data.train_per_client=12", "data.test_per_client=6", "train.local_steps=2",
        "train.batch_size=4", "train.lr=0.05", "federation.rounds=2", "eval.eval_every=1",
        "eval.generate_per_client=1", "eval.max_new_tokens=2", "device=cpu", "federation.sample_fraction=0.5"]


def _args(tmp_path, *extra):
    out = ["compare", "--no-progress", "--algorithms", "mira,mira@ground_truth,fedit,local", "--seeds", "0,1",
           "--set", f"out_dir='{tmp_path}'"]
    for item in [*TINY, *extra]:
        out += ["--set", item]
    return out


def _table_rows(markdown: str) -> list[list[str]]:
    """Every Markdown table row of a report, as its stripped cells."""
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("|")]


def test_compare_runs_all_variants_and_reports(tmp_path, capsys):
    assert main(_args(tmp_path)) == 0
    out = tmp_path / "compare"
    for name in ["mira-s0", "mira+ground_truth-s1", "fedit-s0", "local-s1"]:
        assert (out / name / "adapters").is_dir()
    # same clients, same initial adapters and same batches: identical round-0 metrics and sampling
    first = {v: json.loads((out / f"{v}-s0" / "metrics.jsonl").read_text().splitlines()[0])
             for v in ["mira", "fedit", "local"]}
    assert first["mira"]["local_loss"] == first["fedit"]["local_loss"] == first["local"]["local_loss"]
    sampled = {v: [json.loads(x)["sampled"] for x in (out / f"{v}-s1" / "metrics.jsonl").read_text().splitlines()]
               for v in ["mira", "fedit", "local"]}
    assert sampled["mira"] == sampled["fedit"] == sampled["local"]

    md = (out / "results.md").read_text()
    rows = _table_rows(md)
    assert ["client", "family", "mira", "mira+ground_truth", "fedit", "local"] in rows
    assert "mean local loss" in md and "clients won" in md and "±" in md and "MB" in md
    records = list(csv.DictReader((out / "results.csv").open()))
    assert len(records) == 4 * 9 and {r["seeds"] for r in records} == {"2"}
    by_round = [row for row in rows if row[0] in ("0", "1", "2")]
    assert [row[0] for row in by_round] == ["0", "1", "2"]  # every evaluated round
    final_means = next(row for row in rows if row[0] == "mean local loss")
    assert by_round[-1][1:] == final_means[1:]  # the last round is the final result
    local_bytes = next(row for row in rows if row[0] == "bytes sent + received, whole run")
    assert local_bytes[-1] == "0.000 MB"  # local training communicates nothing
    for png in ["local_loss_per_client.png", "final_local_loss.png", "global_loss.png"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out

    (out / "results.md").unlink()
    assert main(["report", str(out)]) == 0  # re-render without training
    assert (out / "results.md").read_text() == md

    # the sub-runs' records without their adapters (as benchmarks keep them) report the same, and a
    # comparison over them trains nothing again
    for run in [p for p in out.iterdir() if p.is_dir()]:
        archive_run(run, tmp_path / "kept" / run.name)
        shutil.rmtree(run)
    shutil.copytree(tmp_path / "kept", out, dirs_exist_ok=True)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.jsonl")}
    assert main(_args(tmp_path)) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.jsonl")} == stamps
    assert (out / "results.md").read_text() == md and not (out / "fedit-s0" / "adapters").exists()
    with pytest.raises(FileNotFoundError, match="archived record of a run"):
        RunModel(out / "fedit-s0")
    with pytest.raises(ValueError, match="not finished"):
        archive_run(tmp_path, tmp_path / "nowhere")


def test_compare_continues_and_report_errors(tmp_path, capsys, caplog):
    args = _args(tmp_path)
    args[args.index("--seeds") + 1] = "0"
    assert main(args) == 0
    stamp = (tmp_path / "compare" / "mira-s0" / "metrics.jsonl").stat().st_mtime_ns
    assert main(args) == 0  # finished sub-runs are kept, not retrained
    assert (tmp_path / "compare" / "mira-s0" / "metrics.jsonl").stat().st_mtime_ns == stamp
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert main(["compare", "--seeds", "a,b"]) == 2

    # the comparison's record decides what is reported: its variants first, extras only with its seeds
    out = tmp_path / "compare"
    (out / "comparison.json").write_text(json.dumps({"variants": ["fedit", "local"], "seeds": [0]}))
    (out / "mira-s0").rename(out / "mira-s3")
    shutil.copytree(out / "local-s0", out / "local-s4")  # more seeds than asked: only the asked ones count
    assert main(["report", str(out)]) == 0
    assert ["client", "family", "fedit", "local", "mira+ground_truth"] in _table_rows((out / "results.md").read_text())
    assert {r["seeds"] for r in csv.DictReader((out / "results.csv").open())} == {"1"}
    (out / "comparison.json").write_text(json.dumps({"variants": ["fedit", "local"], "seeds": [0, 1]}))
    assert main(["report", str(out)]) == 2
    assert "fedit, local not finished for seeds [0, 1]" in capsys.readouterr().err

    # a sub-run still training (evaluated, but no final adapters yet) is not finished
    (out / "comparison.json").write_text(json.dumps({"variants": ["fedit", "local"], "seeds": [0]}))
    shutil.rmtree(out / "local-s0" / "adapters")
    assert main(["report", str(out)]) == 2
    assert "local not finished for seeds [0]" in capsys.readouterr().err

    # without the record (the archived sub-runs of a published comparison, say): every variant, over
    # the seeds all of them finished
    (out / "comparison.json").unlink()
    assert main(["report", str(out)]) == 2
    assert "no seed is finished for every variant" in capsys.readouterr().err
    for run in ["local-s0", "local-s4"]:
        shutil.rmtree(out / run)
    (out / "mira-s3").rename(out / "mira-s0")
    shutil.copytree(out / "fedit-s0", out / "fedit-s1")
    with caplog.at_level(logging.WARNING, logger="mira.reporting"):
        assert main(["report", str(out)]) == 0
    assert "leaving out fedit's seeds [1]" in caplog.text
    assert ["client", "family", "fedit", "mira+ground_truth", "mira"] in _table_rows((out / "results.md").read_text())
    assert {r["seeds"] for r in csv.DictReader((out / "results.csv").open())} == {"1"}


def test_a_later_compare_takes_round_0_from_a_sibling_with_the_same_initial_state(tmp_path, caplog):
    """Variants run by separate commands (or processes) share one round-0 evaluation, but only with
    the same seed, kind of adapter, model, data and evaluation settings."""
    cfg = load_config(None, [*TINY, f"out_dir='{tmp_path}'"])
    compare(cfg, ["fedit"], [0], progress=False)
    with caplog.at_level(logging.INFO, logger="mira.comparison"):
        compare(cfg, ["local", "fedptuning"], [0], progress=False)
        compare(load_config(None, [*TINY, f"out_dir='{tmp_path}'", "eval.max_new_tokens=3"]), ["mira"], [0],
                progress=False)
    assert "local-s0 takes its round-0 evaluation from fedit-s0" in caplog.text
    assert "fedptuning-s0 takes" not in caplog.text and "mira-s0 takes" not in caplog.text
    first = {v: json.loads((cfg.run_dir / f"{v}-s0" / "metrics.jsonl").read_text().splitlines()[0])
             for v in ["fedit", "local", "fedptuning", "mira"]}
    # round 0 evaluated by fedit, fedptuning (P-tuning) and mira (other evaluation settings); local took fedit's
    assert [v for v in first if "eval_seconds" in first[v]] == ["fedit", "fedptuning", "mira"]
    assert first["local"] == evaluation_part(first["fedit"]) | {"round": 0, "sampled": []}
    assert first["mira"]["local_loss"] == first["fedit"]["local_loss"]  # the losses do not depend on max_new_tokens


def test_variants_started_side_by_side_evaluate_round_0_once(tmp_path, monkeypatch):
    """Two compare processes started together (here threads, each with its own lock file handle): the
    second waits while the first evaluates round 0, then takes its record instead of computing its own."""
    import threading
    import time

    from mira.simulation import InProcess

    cfg = load_config(None, [*TINY, f"out_dir='{tmp_path}'"])
    first_evaluating, go, full = threading.Event(), threading.Event(), []
    evaluate = InProcess.evaluate

    def held(self, thetas, clients, generate, test, cross, known=frozenset(), answered=frozenset()):
        if generate and len(clients) == len(thetas):  # every client, with answers: round 0 or the last
            full.append(threading.current_thread().name)
            if len(full) == 1:
                first_evaluating.set()
                go.wait(60)
        return evaluate(self, thetas, clients, generate, test, cross, known, answered)
    monkeypatch.setattr(InProcess, "evaluate", held)
    threads = [threading.Thread(target=compare, args=(cfg, [v], [0]), kwargs={"progress": False}, name=v)
               for v in ("fedit", "local")]
    threads[0].start()
    assert first_evaluating.wait(60)
    threads[1].start()
    time.sleep(1.0)  # without the lock, local would now be evaluating its own round 0
    assert full == ["fedit"]
    go.set()
    for thread in threads:
        thread.join(120)
    first = {v: json.loads((cfg.run_dir / f"{v}-s0" / "metrics.jsonl").read_text().splitlines()[0])
             for v in ("fedit", "local")}
    assert "eval_seconds" in first["fedit"] and "eval_seconds" not in first["local"]
    assert first["local"] == evaluation_part(first["fedit"]) | {"round": 0, "sampled": []}


def test_kept_sub_run_records_are_not_ignored_by_git():
    """The benchmarks commit their sub-runs' records under benchmarks/results/<name>/runs/; an ignore
    rule for the top-level runs/ folder must not swallow them (it once did, and they were lost)."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    kept = "benchmarks/results/verdict-ni/runs/fedit-s0/metrics.jsonl"
    ignored = subprocess.run(["git", "check-ignore", kept, "runs/default/metrics.jsonl"], cwd=root,
                             capture_output=True, text=True).stdout.split()
    assert ignored == ["runs/default/metrics.jsonl"]


def test_a_paper_preset_command_publishes_every_variant_over_the_seeds_all_finished(tmp_path, monkeypatch):
    """Whatever slice a benchmarks/paper_presets.py command ran (or one beside it, which rewrote the
    comparison's record), it publishes the largest complete table: the published order first."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from mira.results import ADAPTERS
    from paper_presets import report_everything_recorded
    out, published = tmp_path / "cmp", tmp_path / "published"
    for run in ["fedit-s0", "fedit-s1", "mira+random-s0", "mira+random-s1", "fedkseed-s0", "fedkseed-s1"]:
        (out / run / ADAPTERS).mkdir(parents=True)
    (out / "fedit-s2").mkdir()  # still training
    (out / "comparison.json").write_text(json.dumps({"variants": ["fedit"], "seeds": [2], "params": {}}))
    published.mkdir()
    (published / "results.csv").write_text("variant,client\nmira+random,a\nmira+random,b\nfedit,a\n")
    assert report_everything_recorded(out, published) == (["mira+random", "fedit", "fedkseed"], [0, 1])
    assert json.loads((out / "comparison.json").read_text()) == {
        "variants": ["mira+random", "fedit", "fedkseed"], "seeds": [0, 1], "params": {}}
    shutil.rmtree(out / "fedkseed-s1")
    report_everything_recorded(out, published)
    assert json.loads((out / "comparison.json").read_text())["seeds"] == [0]
    shutil.rmtree(out / "fedkseed-s0")
    (out / "fedkseed-s2" / ADAPTERS).mkdir(parents=True)
    with pytest.raises(SystemExit, match="no seed is finished for every variant"):
        report_everything_recorded(out, published)


def test_crossover_is_the_round_from_which_a_curve_stays_below():
    from mira.reporting import crossover

    rounds = [0, 5, 10, 15, 20]
    assert crossover(rounds, [3.0, 2.5, 2.0, 1.8, 1.7], [3.0, 2.2, 2.1, 1.9, 1.9]) == 10
    assert crossover(rounds, [3.0, 2.0, 2.5, 1.8, 1.7], [3.0, 2.2, 2.1, 1.9, 1.9]) == 15  # dipped below, came back
    assert crossover(rounds, [3.0, 2.5, 2.0, 1.8, 2.0], [3.0, 2.2, 2.1, 1.9, 1.9]) is None  # above at the end
    assert crossover(rounds, [2.9, 2.0, 1.9, 1.8, 1.7], [3.0, 2.2, 2.1, 1.9, 1.9]) == 0


def test_a_privacy_command_finishing_beside_another_publishes_what_is_finished(tmp_path, monkeypatch):
    """benchmarks/privacy.py --algorithms fedit, finishing while a command beside it still trains MIRA at
    the same level, publishes FedIT's table (it used to fail: the comparison named the unfinished MIRA)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import privacy
    from mira.results import ADAPTERS

    out = tmp_path / "privacy-ni-60-eps16"
    (out / "fedit-s0" / ADAPTERS).mkdir(parents=True)
    (out / "mira+ground_truth-s0").mkdir()  # still training
    (out / "comparison.json").write_text(json.dumps({"variants": ["mira+ground_truth"], "seeds": [0], "params": {}}))
    published = []
    monkeypatch.setattr(privacy, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(privacy, "compare_kept", lambda *args: out)
    monkeypatch.setattr(privacy, "publish", lambda out, name, overrides, script, argv: published.append(argv))
    monkeypatch.setattr(privacy, "summarise", lambda *args: None)
    monkeypatch.setattr("sys.argv", ["privacy.py", "--setting", "ni-60", "--levels", "16", "--algorithms", "fedit"])
    privacy.main()
    assert json.loads((out / "comparison.json").read_text())["variants"] == ["fedit"]
    assert published == [["--setting", "ni-60", "--levels", "16", "--clip", "1.0", "--seeds", "0",
                          "--algorithms", "fedit"]]


def test_the_privacy_summary_splits_the_first_evaluation_by_whether_a_client_was_sampled(monkeypatch):
    """benchmarks/privacy.py's early-round table: each client at its newest local loss, sampled or not."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from privacy import sampled_split

    history = [{"round": 0, "sampled": ["a", "b", "c"], "local_loss": {"a": 3.0, "b": 3.0, "c": 2.0},
                "mean_local_loss": 8 / 3},
               {"round": 1, "sampled": ["a"]},
               {"round": 2, "sampled": ["b"], "local_loss": {"a": 20.0, "b": 22.0}, "mean_local_loss": 14.0}]
    assert sampled_split(history) == (2, 2, 21.0, 1, 2.0)
    history[1]["sampled"] = ["c"]
    assert sampled_split(history) == (2, 2, 12.0, 1, 20.0)  # b and c (c at its round-0 loss), and a
    history[1]["sampled"] = ["a", "c"]
    assert sampled_split(history) is None  # everyone was sampled: nothing to split


def test_the_privacy_summary_averages_finite_releases_and_counts_rejected_ones(monkeypatch):
    """A client whose private training diverged releases a non-finite adapter, which the server rejects:
    the released norm is over the finite releases, and the rejection is counted."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from privacy import releases

    run_1 = [{"round": 0}, {"round": 1, "update_norm": {"a": 600.0, "b": float("nan")}, "rejected": {"b": "non-finite"}},
             {"round": 2, "update_norm": {"a": 700.0}}]
    run_2 = [{"round": 0}, {"round": 1, "update_norm": {"a": 800.0}}]
    assert releases([run_1, run_2]) == (700.0, 0.5)

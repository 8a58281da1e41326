"""Client-level differential privacy: clipping, seeded noise, the accountant, the budget stop, and the
same released numbers on the simulator and on Flower."""

import math

import pytest
import torch

from mira.config import ConfigError, PrivacyConfig, load_config
from mira.privacy import Accountant, epsilon, noise_generator, privatize
from mira.simulation import run


def test_clipping_bounds_the_released_update_and_leaves_private_state_alone():
    sent = {"adapter": torch.zeros(50), "global": torch.ones(20)}
    reply = {"adapter": torch.full((50,), 3.0), "global": torch.full((20,), 5.0), "seeds": torch.arange(3)}
    released = privatize(sent, reply, frozenset({"adapter"}), PrivacyConfig(clip=0.7), noise_generator(0, 1, 2))
    assert float((released["global"] - sent["global"]).norm()) == pytest.approx(0.7, rel=1e-5)
    assert torch.equal(released["adapter"], reply["adapter"]) and torch.equal(released["seeds"], reply["seeds"])
    small = {"adapter": torch.zeros(50), "global": torch.full((20,), 1.01)}
    kept = privatize(sent, small, frozenset({"adapter"}), PrivacyConfig(clip=0.7), noise_generator(0, 1, 2))
    torch.testing.assert_close(kept["global"], small["global"])  # norm 0.045 < C: unchanged


def test_noise_has_std_sigma_c_and_is_a_function_of_seed_client_and_round():
    cfg = PrivacyConfig(clip=0.5, noise_multiplier=1.3)
    sent = {"adapter": torch.zeros(20_000)}
    noise = privatize(sent, dict(sent), frozenset(), cfg, noise_generator(7, 3, 4))["adapter"]
    assert float(noise.std()) == pytest.approx(1.3 * 0.5, rel=0.02) and abs(float(noise.mean())) < 0.02
    again = privatize(sent, dict(sent), frozenset(), cfg, noise_generator(7, 3, 4))["adapter"]
    other = privatize(sent, dict(sent), frozenset(), cfg, noise_generator(7, 3, 5))["adapter"]
    assert torch.equal(noise, again) and not torch.equal(noise, other)


def test_the_accountant_is_dp_accountings_rdp_composition():
    import dp_accounting

    library = dp_accounting.rdp.RdpAccountant()
    library.compose(dp_accounting.GaussianDpEvent(1.1), 6)
    assert epsilon(1.1, 6, 1e-3) == library.get_epsilon(1e-3)
    assert epsilon(1.1, 0, 1e-3) == 0 and epsilon(0.0, 1, 1e-3) == math.inf
    assert epsilon(1.1, 7, 1e-3) > epsilon(1.1, 6, 1e-3) > epsilon(2.0, 6, 1e-3)
    accountant = Accountant(PrivacyConfig(clip=1.0, noise_multiplier=1.1), train_sizes=[1000, 50])
    accountant.record([0, 0, 1])
    assert accountant.epsilon(0) == epsilon(1.1, 2, 1e-3) and accountant.epsilon(1) == epsilon(1.1, 1, 1 / 50)


def test_noise_without_a_clipping_norm_is_refused():
    with pytest.raises(ConfigError, match="privacy.clip: required"):
        load_config(None, ["privacy.noise_multiplier=1.0"])


def test_a_private_run_records_epsilon_and_stops_at_the_target(tiny_config, caplog):
    sigma, target = 4.0, 1.1
    cfg = tiny_config("name=dp", "federation.rounds=4", "federation.sample_fraction=1.0", "privacy.clip=0.5",
                      f"privacy.noise_multiplier={sigma}", "privacy.delta=1e-3", f"privacy.target_epsilon={target}")
    allowed = max(n for n in range(1, 10) if epsilon(sigma, n, 1e-3) <= target)
    assert 1 <= allowed < 4, "choose sigma and the target so that the budget stops releases within the run"
    with caplog.at_level("INFO", logger="mira.rounds"):
        result = run(cfg, progress=False)
    last = result.history[-1]
    assert list(last["epsilon"].values()) == [pytest.approx(epsilon(sigma, allowed, 1e-3))] * len(result.clients)
    assert last["max_epsilon"] <= target
    stopped = [r for r in result.history if r.get("budget_spent")]
    assert [r["round"] for r in stopped] == list(range(allowed + 1, 5))
    assert all(r.get("train_loss", {}) == {} for r in stopped)
    assert "has spent its privacy budget" in caplog.text
    assert all(math.isnan(v) for r in result.history[1:allowed + 1] for v in r["train_loss"].values())


def test_what_the_server_holds_is_the_clipped_update_plus_noise(tiny_config):
    """MIRA with λ = 0 keeps each client's released adapter: initial + clipped update (norm <= C) +
    N(0, σ²C²) noise per coordinate, so its distance from the initial adapter is about σ·C·sqrt(P)."""
    from mira.client import build_workspace

    cfg = tiny_config("name=noisy", "federation.rounds=1", "federation.sample_fraction=1.0", "mira.lam=0",
                      "privacy.clip=0.05", "privacy.noise_multiplier=1.0")
    noisy = run(cfg, progress=False)
    start = build_workspace(cfg).initial_theta
    expected = 0.05 * math.sqrt(start.numel())
    moved = (noisy.thetas - start).norm(dim=1)
    assert all(abs(float(n) - expected) < 0.1 * expected for n in moved)


def test_flower_releases_the_simulators_noised_adapters(tmp_path):
    """Clipping and seeded noise on the Flower nodes give the simulator's adapters, losses and ε; an
    algorithm whose clients keep private state is refused there."""
    import json

    from mira.flower.loopback import Loopback
    from mira.flower.serverapp import run_on_grid
    from tests.test_flower import ROOT, assert_same_as_simulator, flower_overrides, records

    out = tmp_path / "flower"
    overrides = (flower_overrides("dp") + "; federation.rounds=2; eval.generate_per_client=0; privacy.clip=0.1; "
                 "privacy.noise_multiplier=0.8")
    with Loopback(tmp_path / "deployment", num_nodes=3) as federation:
        log = federation.run(ROOT, {"overrides": overrides, "out-dir": str(out)}, timeout=600)
    assert assert_same_as_simulator(tmp_path, out / "dp", overrides, log) == json.loads(
        flower_overrides("x").split("data.tasks=")[1].split(";")[0])
    assert records(out / "dp")[-1]["epsilon"] == records(tmp_path / "sim" / "dp")[-1]["epsilon"]
    with pytest.raises(ConfigError, match="ditto's clients keep private state"):
        run_on_grid(None, load_config(None, ["federation.algorithm=ditto", "privacy.clip=1", "model.name=tiny-random"]))

"""mira as a Flower app: `serverapp:app` (ServerApp) and `clientapp:app` (ClientApp), the components
`flwr run` starts; or, from Python, `server_app(config)` and `client_app()` for
`flwr.simulation.run_simulation`.

Both sides use the same core as the in-process simulator: the server runs the round loop of
`mira.rounds` with a `FlowerBackend`, the client runs `mira.client.train_client` (its algorithm's
client step) and `evaluate_client` on its partition, so one seed and config give the same adapters
on either path.

    from flwr.simulation import run_simulation
    import mira, mira.flower
    cfg = mira.load_config("configs/example.toml")
    run_simulation(server_app=mira.flower.server_app(cfg), client_app=mira.flower.client_app(),
                   num_supernodes=3)        # one SuperNode per client; results in cfg.run_dir
"""

from __future__ import annotations


def server_app(config, *, resume: bool = False, overwrite: bool = False):
    """A ServerApp that runs `config` (a `Config`, a dict of its tables or a TOML path) on the nodes of
    the grid it is given, writing the run directory of cfg.run_dir as `mira run` does."""
    from flwr.serverapp import ServerApp

    from ..api import as_config
    from .serverapp import run_on_grid

    cfg = as_config(config)
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        run_on_grid(grid, cfg, resume=resume, overwrite=overwrite)
    return app


def client_app():
    """mira's ClientApp: it takes its configuration from the server's messages and its client from its
    node's config (`partition-id`, `num-partitions`, optionally `client-data`)."""
    from .clientapp import app

    return app

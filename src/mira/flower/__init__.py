"""mira as a Flower app: `server_app:app` (ServerApp) and `client_app:app` (ClientApp).

Both sides use the same core as the in-process simulator (`mira.simulation`): the server runs
`run_federation` with a `FlowerBackend`, the client runs `train_client` / `evaluate_client` on its
partition, so one seed and config give the same adapters on either path.
"""

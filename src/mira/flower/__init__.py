"""mira as a Flower app: `server_app:app` (ServerApp) and `client_app:app` (ClientApp).

Both sides use the same core as the in-process simulator: the server runs the round loop of
`mira.rounds` with a `FlowerBackend`, the client runs `mira.client.train_client` (its algorithm's
client step) and `evaluate_client` on its partition, so one seed and config give the same adapters
on either path.
"""

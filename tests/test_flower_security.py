"""Flower with TLS and SuperNode authentication, on loopback with a throw-away CA and node keys:
registered nodes run a round, an unregistered key is refused, a node without the CA cannot connect,
and no process runs with --insecure."""

import datetime
import ipaddress
import shutil
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mira.flower.loopback import Loopback

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    not (Path(sys.executable).parent / "flower-superlink").exists() and shutil.which("flower-superlink") is None,
    reason="the Flower binaries (flower-superlink, flower-supernode) are not installed")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signer, ca: bool, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certificates(folder: Path, nodes: list[str]) -> None:
    """ca.crt, server.pem / server.key for 127.0.0.1, and a P-384 SSH key pair per node name."""
    folder.mkdir(parents=True)
    ca_key, key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca = _certificate(_name("mira test CA"), _name("mira test CA"), ca_key.public_key(), ca_key, ca=True)
    server = _certificate(_name("localhost"), ca.subject, key.public_key(), ca_key, ca=False,
                          san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                                          serialization.NoEncryption()))
    for node in nodes:
        private = ec.generate_private_key(ec.SECP384R1())
        (folder / node).write_bytes(private.private_bytes(pem, serialization.PrivateFormat.OpenSSH,
                                                          serialization.NoEncryption()))
        (folder / f"{node}.pub").write_bytes(private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                               serialization.PublicFormat.OpenSSH))


def _wait_for_exit(federation: Loopback, name: str, timeout: float = 90) -> str:
    process = federation.processes[name]
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return (federation.root / f"{name}.log").read_text()


def test_tls_and_node_authentication(tmp_path):
    certs = tmp_path / "certs"
    make_certificates(certs, ["node0", "node1", "rogue"])
    out = tmp_path / "flower"
    overrides = ("model.name=tiny-random; data.tasks=[\"add\", \"sentiment\"]; data.train_per_client=8; "
                 "data.test_per_client=4; data.val_per_client=4; federation.rounds=1; federation.sample_fraction=1.0; "
                 "train.local_steps=2; eval.generate_per_client=1; flower.round_timeout=60; name=secure")
    with Loopback(tmp_path / "deployment", num_nodes=2, tls=certs,
                  node_keys={0: certs / "node0", 1: certs / "node1"}) as federation:
        log = federation.run(ROOT, {"overrides": overrides, "out-dir": str(out)}, timeout=600)
        assert (out / "secure" / "adapters" / "add.safetensors").is_file(), log[-3000:]
        # a node whose key was never registered is refused
        federation.start_node(0, key=certs / "rogue", name="rogue")
        rogue = _wait_for_exit(federation, "rogue")
        assert federation.processes["rogue"].returncode not in (None, 0), rogue[-2000:]
        assert "Failed to activate SuperNode" in rogue
        # a node that does not trust the CA cannot even open the connection
        federation.start_node(1, root_certificates=False, name="no-ca")
        no_ca = _wait_for_exit(federation, "no-ca")
        assert federation.processes["no-ca"].returncode not in (None, 0) and "CERTIFICATE_VERIFY_FAILED" in no_ca
        commands = {name: " ".join(map(str, p.args)) for name, p in federation.processes.items()}
        assert not any("--insecure" in c for c in commands.values())  # nothing is sent in clear text
        assert "--ssl-certfile" in commands["superlink"] and "--enable-supernode-auth" in commands["superlink"]
        assert all("--root-certificates" in commands[f"node{k}"] for k in (0, 1))
    assert "insecure" not in (tmp_path / "deployment" / "cli" / "config.toml").read_text()

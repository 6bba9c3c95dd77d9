"""The TLS trust of :mod:`tiergate.providers.http_client`: the CA bundle is not loaded at import
nor when the context is made, is loaded from OpenSSL's default locations on the first handshake
(or by ``prewarm`` for an https catalog), and TLS verification is unchanged: a certificate from a
trusted CA passes, any other is refused. Each case runs in a fresh interpreter (the import is what is under test),
against a real TLS server on 127.0.0.1 with a certificate from a CA made for the test."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tiergate.providers.http_client import TrustOnFirstUse, trust_on_first_use

#: A TLS server answering every request with one chat completion, then the native adapter
#: calling it; prints what the deferred context held before and after.
PROBE = r"""
import asyncio, json, os, ssl, sys
cert_file_before = os.environ.get("SSL_CERT_FILE")
from tiergate.providers.http_client import TrustOnFirstUse, verified_context
from tiergate import errors
from tiergate.config.catalog import ModelSpec
from tiergate.providers.base import ProviderCall
from tiergate.providers.openai_compat import OpenAICompatProvider

ctx = verified_context()
state = {"deferred": isinstance(ctx, TrustOnFirstUse), "cas_at_import": ctx.cert_store_stats()["x509_ca"],
         "same": verified_context() is ctx,
         "cert_file_restored": os.environ.get("SSL_CERT_FILE") == cert_file_before,
         "cert_dir_restored": "SSL_CERT_DIR" not in os.environ}
BODY = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()

async def serve(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY) + BODY)
        await writer.drain()
    except Exception:
        pass
    writer.close()

async def main():
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    spec = ModelSpec(name="m", id="dep-m", model="openai/m", adapter="openai-compatible", tier=1,
                     api_base=f"https://localhost:{port}/v1")
    provider = OpenAICompatProvider()
    try:
        out = await provider.complete(ProviderCall(deployment=spec, body={"messages": [{"role": "user", "content": "hi"}]},
                                                   timeout_s=10))
        state["answer"] = out["choices"][0]["message"]["content"]
    except errors.UpstreamError as e:
        state["error"] = [type(e).__name__, e.message]
    await provider.aclose()
    server.close()
    state["cas_after_call"] = ctx.cert_store_stats()["x509_ca"]

asyncio.run(main())
print(json.dumps(state))
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A test CA, a server certificate for localhost/127.0.0.1 signed by it, and its key."""
    d = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("tiergate test CA")).issuer_name(_name("tiergate test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


def _probe(tls: dict[str, Path], cert_file: Path) -> dict:
    env = {**os.environ, "SSL_CERT_FILE": str(cert_file)}
    env.pop("SSL_CERT_DIR", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(tls["cert"]), str(tls["key"])], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_trust_is_loaded_on_first_handshake_from_the_default_locations(tls):
    state = _probe(tls, tls["ca"])  # the default CA file holds only the test CA
    assert state["deferred"] and state["cas_at_import"] == 0 and state["same"]
    assert state["cert_file_restored"] and state["cert_dir_restored"]
    assert state.get("error") is None and state["answer"] == "over tls"
    assert state["cas_after_call"] == 1


def test_a_certificate_from_an_untrusted_ca_is_still_refused(tls):
    system = Path(ssl.get_default_verify_paths().openssl_cafile)
    bundle = system if system.is_file() else Path(os.devnull)
    state = _probe(tls, bundle)  # the system trust store, which does not hold the test CA
    assert state["deferred"] and state["cas_at_import"] == 0
    assert "answer" not in state
    name, message = state["error"]
    assert name == "UpstreamUnavailable" and "CertificateError" in message


def test_the_deferred_context_has_the_default_context_settings():
    reference = ssl.create_default_context()
    reference.set_alpn_protocols(["http/1.1"])
    ctx = trust_on_first_use(ssl.create_default_context(cafile=None, capath=None))
    assert isinstance(ctx, TrustOnFirstUse)
    for name in ("verify_mode", "check_hostname", "options", "verify_flags", "minimum_version", "maximum_version",
                 "post_handshake_auth", "protocol"):
        assert getattr(ctx, name) == getattr(reference, name), name
    ctx.load_trust()
    ctx.load_trust()  # idempotent
    assert ctx.cert_store_stats() == reference.cert_store_stats()
    assert sorted(c["serialNumber"] for c in ctx.get_ca_certs()) == sorted(
        c["serialNumber"] for c in reference.get_ca_certs())


PREWARM = r"""
import json, sys
from tiergate.compose import build_services, prewarm
from tiergate.config.catalog import parse
from tiergate.settings import Settings
from tiergate.providers.http_client import verified_context
out = []
for base in sys.argv[1:]:
    catalog = parse("models:\n  - {name: m, model: openai/m, adapter: openai-compatible, tier: 1, "
                    f"api_base: '{base}'}}\n", source="test")
    services = build_services(Settings(store="memory"), catalog)
    prewarm(services, snapstart=False)
    out.append(verified_context().cert_store_stats()["x509_ca"])
print(json.dumps(out))
"""


def test_prewarm_loads_the_ca_bundle_only_for_an_https_endpoint(tls, tmp_path):
    env = {**os.environ, "SSL_CERT_FILE": str(tls["ca"]), "TIERGATE_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PREWARM, "http://127.0.0.1:1/v1", "https://example.invalid/v1"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, 1]

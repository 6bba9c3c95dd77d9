"""The one aiohttp importer, with the CA bundle loaded when TLS is first needed.

Importing aiohttp builds two SSL contexts at once (``aiohttp.connector``: a verified one and
an unverified one), and each loads the system CA bundle: with OpenSSL 3 that is ~25 ms of
CPU apiece (144 certificates here), about a tenth of a Lambda cold start, paid even by a
process that never opens a TLS connection (an all-``http://`` catalog: a self-hosted
endpoint in a VPC, the benchmarks' upstream). Here aiohttp is imported with OpenSSL's
default CA locations (``SSL_CERT_FILE``, ``SSL_CERT_DIR``) pointing nowhere, the caller's
values restored right after, and aiohttp's verified default context is replaced by
:class:`TrustOnFirstUse`: the same settings as ``ssl.create_default_context()`` (copied from
one), whose CA bundle is loaded from the same default locations on its first handshake, or
at init by :func:`load_trust` (``compose.prewarm``, when the catalog has an https endpoint:
a SnapStart snapshot then holds it). The unverified context needs no CAs (it verifies
nothing). Nothing else changes: a request without ``ssl=`` verifies against the system
trust store as before (``tests/providers/test_http_client.py``).

If aiohttp was imported before this module (a test, an embedding application), its
contexts are already complete and are left alone. ``aiohttp.connector._SSL_CONTEXT_VERIFIED``
is a private name of aiohttp 3.14 (pinned); the test above fails if it moves.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")
#: What aiohttp copies into its verified context besides the CA bundle (``_make_ssl_context``).
_SETTINGS = ("verify_mode", "check_hostname", "options", "verify_flags", "minimum_version", "maximum_version",
             "keylog_filename", "post_handshake_auth")
_ALPN = ("http/1.1",)


class TrustOnFirstUse(ssl.SSLContext):
    """A verifying client context that loads the default CA locations before its first
    handshake (``wrap_bio``: asyncio and uvloop; ``wrap_socket``: blocking sockets)."""

    _trust_lock = threading.Lock()

    def load_trust(self) -> None:
        """Load the default CA locations now (idempotent)."""
        if self.__dict__.get("_trusted"):
            return
        with self._trust_lock:
            if not self.__dict__.get("_trusted"):
                self.load_default_certs(ssl.Purpose.SERVER_AUTH)
                self.__dict__["_trusted"] = True

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self.load_trust()
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self.load_trust()
        return super().wrap_socket(*args, **kwargs)


def trust_on_first_use(reference: ssl.SSLContext) -> TrustOnFirstUse:
    """A :class:`TrustOnFirstUse` with ``reference``'s settings (a default context built
    without its CAs) and aiohttp's ALPN."""
    ctx = TrustOnFirstUse(ssl.PROTOCOL_TLS_CLIENT)
    for name in _SETTINGS:
        if hasattr(reference, name):
            setattr(ctx, name, getattr(reference, name))
    ctx.set_alpn_protocols(_ALPN)
    return ctx


#: A path that does not exist (nothing is ever written beside our modules).
_NOWHERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-ca-bundle-here")


@contextmanager
def _no_default_ca_load() -> Iterator[None]:
    # OpenSSL reads these variables on every set_default_verify_paths; a missing file or
    # directory is skipped silently (no certificate loaded, no error).
    saved = {k: os.environ.get(k) for k in _CA_ENV}
    os.environ.update(dict.fromkeys(_CA_ENV, _NOWHERE))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _import_aiohttp() -> Any:
    if "aiohttp.connector" in sys.modules:  # imported before us: complete contexts, leave them
        import aiohttp

        return aiohttp
    with _no_default_ca_load():
        import aiohttp
        import aiohttp.connector as connector

        reference = ssl.create_default_context()  # its settings, without the CA load
    connector._SSL_CONTEXT_VERIFIED = trust_on_first_use(reference)
    return aiohttp


aiohttp = _import_aiohttp()


def verified_context() -> ssl.SSLContext:
    """aiohttp's verifying client context (the system trust store, loaded on first use):
    also what :mod:`tiergate.providers.http1` connects with."""
    import aiohttp.connector as connector

    return connector._SSL_CONTEXT_VERIFIED  # type: ignore[no-any-return]


def load_trust() -> None:
    """Load aiohttp's default CA bundle now (init), if it is still deferred."""
    import aiohttp.connector as connector

    ctx = connector._SSL_CONTEXT_VERIFIED
    if isinstance(ctx, TrustOnFirstUse):
        ctx.load_trust()

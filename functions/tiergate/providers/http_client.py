"""The TLS trust of the gateway's HTTP client (:mod:`tiergate.providers.http1`): the
system CA bundle, loaded when TLS is first needed.

Loading the system CA bundle costs ~25 ms of CPU with OpenSSL 3 (144 certificates here),
about a tenth of a Lambda cold start, and a process that never opens a TLS connection (an
all-``http://`` catalog: a self-hosted endpoint in a VPC, the benchmarks' upstream) need
not pay it. So the one verifying context, :func:`verified_context`, is a
:class:`TrustOnFirstUse`: the settings of ``ssl.create_default_context()`` (copied from one
built with OpenSSL's default CA locations, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``,
pointing nowhere for that moment), whose CA bundle is loaded from the same default
locations on its first handshake, or at init by :func:`load_trust` (``compose.prewarm``,
when the catalog has an https endpoint: a SnapStart snapshot then holds it). Verification
is unchanged: a certificate from a trusted CA passes, any other is refused
(``tests/providers/test_http_client.py``).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")
#: What a default context holds besides its CA bundle.
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
    without its CAs), offering HTTP/1.1 by ALPN."""
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
    # directory is skipped silently (no certificate loaded, no error). The caller's values
    # are back right after.
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


_context: TrustOnFirstUse | None = None
_context_lock = threading.Lock()


def verified_context() -> TrustOnFirstUse:
    """The process's verifying client context (the system trust store, loaded on first use)."""
    global _context
    ctx = _context
    if ctx is None:
        with _context_lock:
            if _context is None:
                with _no_default_ca_load():
                    reference = ssl.create_default_context()  # its settings, without the CA load
                _context = trust_on_first_use(reference)
            ctx = _context
    return ctx


def load_trust() -> None:
    """Load the CA bundle now (init), if it is still deferred."""
    verified_context().load_trust()

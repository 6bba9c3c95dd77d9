"""Dashboard sign-in sessions: a signed, expiring cookie, so the key is not kept in page script.

The cookie holds ``{key_id, tenant, is_master, exp}`` signed with HMAC-SHA256. The
signing secret is derived from the master key (rotating the master key ends every
session), or, on a gateway without one (loopback only), a random secret kept in the
data dir. Every request re-checks a virtual key (revoked, expired, scope removed) against
the store, so a session never outlives the key's permission by more than the key cache.

CSRF: the cookie is ``SameSite=Strict`` (never sent on a cross-site request) and
``HttpOnly`` (``Secure`` under TLS); the data routes are read-only GETs without CORS
headers; the two writing routes (sign in, sign out) also require a JSON body or the
``x-tiergate-dashboard`` header -- neither can be sent cross-site without a CORS
preflight, which this gateway never grants -- and an ``Origin``, when sent, equal to the
request's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from tiergate.settings import Settings

COOKIE = "tiergate_session"
CSRF_HEADER = "x-tiergate-dashboard"


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    tenant: str
    is_master: bool
    exp: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(session: Session, secret: bytes) -> str:
    body = _b64(orjson.dumps(asdict(session)))
    return body + "." + _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def verify(token: str | None, secret: bytes, *, now: float) -> Session | None:
    """The session a cookie carries, or None (absent, forged, malformed or expired)."""
    if not token or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    want = _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(mac, want):
        return None
    try:
        data = orjson.loads(_unb64(body))
        session = Session(key_id=str(data["key_id"]), tenant=str(data["tenant"]),
                          is_master=bool(data["is_master"]), exp=int(data["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.exp > now else None


def session_secret(settings: Settings) -> bytes:
    if settings.master_key is not None:
        return hmac.new(settings.master_key.get_secret_value().encode(), b"tiergate-dashboard-session",
                        hashlib.sha256).digest()
    path = Path(settings.data_dir) / "dashboard.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
    return path.read_bytes()

"""CSRF protection: every form carries a token another site cannot know.

Signed-in forms carry HMAC(secret, sha256(sign-in token)): bound to the contributor's session,
it needs no server-side storage and changes when the token does. The sign-in form, before any
session exists, uses a double-submit cookie (a random value both in a cookie and in the form).
The secret is random per studio process unless `REPLICA_STUDIO_SECRET` fixes it, so restarting
the studio only means reloading the page before submitting.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

FIELD = "csrf_token"
SIGNIN_COOKIE = "replica_studio_signin"


class Csrf:
    """Makes and checks the CSRF tokens of one studio process."""

    def __init__(self, secret: bytes | None = None) -> None:
        env = os.environ.get("REPLICA_STUDIO_SECRET")
        self.secret = secret or (env.encode() if env else secrets.token_bytes(32))

    def token_for(self, session_token: str) -> str:
        """The form token of a signed-in session (its sign-in token is never put in a page)."""
        digest = hashlib.sha256(session_token.encode("utf-8")).digest()
        return hmac.new(self.secret, b"csrf:" + digest, hashlib.sha256).hexdigest()

    def valid(self, session_token: str | None, submitted: object) -> bool:
        """True only when the form's token matches the session's (constant-time comparison)."""
        if not session_token or not isinstance(submitted, str) or not submitted:
            return False
        return hmac.compare_digest(self.token_for(session_token), submitted)


def new_signin_value() -> str:
    return secrets.token_urlsafe(24)


def signin_valid(cookie: str | None, submitted: object) -> bool:
    """Double-submit check of the sign-in form."""
    if not cookie or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(cookie, submitted)

"""Sign-in: one token per contributor, created once, shown once, stored only as a hash.

Tokens are the server's API keys (replica/agents/keys.py) kept in the studio's own database
(`<run>/studio/tokens.sqlite`), named by contributor id. A browser signs in by pasting its token
once; the studio keeps it in an HttpOnly, SameSite=Strict cookie. Scripts may send
`Authorization: Bearer <token>` instead.
"""

from __future__ import annotations

from fastapi import Request

from replica.agents.keys import KeyStore, create_key, list_keys, revoke_key
from replica.errors import UserError
from replica.studio import consent
from replica.studio.site import StudioSite, check_slug

COOKIE = "replica_studio"


class StudioError(Exception):
    """An HTTP error the studio answers with a page: status and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def create_token(site: StudioSite, contributor: str) -> str:
    """A new sign-in token for a known contributor (one active token each; revoke to replace)."""
    check_slug(contributor)
    if consent.current(site, contributor) is None:
        files = ", ".join(str(p) for p in site.consent_files()) or "no contributors file found"
        raise UserError(f"--contributor {contributor!r}: no contributor record with that id ({files})")
    if any(k.name == contributor and k.revoked_at is None for k in list_keys(site.tokens_db)):
        raise UserError(
            f"{site.tokens_db}: {contributor!r} already has a token (revoke it first: "
            f"replica studio token revoke --contributor {contributor})"
        )
    return create_key(site.tokens_db, contributor)


def manage_tokens(site: StudioSite, action: str, contributor: str | None = None) -> str:
    """`replica studio token create|revoke|list`: the text to print (a token is shown only here, once)."""
    if action == "list":
        rows = [
            f"{k.name}\tcreated {k.created_at}\t{'revoked ' + k.revoked_at if k.revoked_at else 'active'}"
            for k in list_keys(site.tokens_db)
        ]
        return "\n".join(rows) if rows else f"no tokens in {site.tokens_db}"
    if not contributor:
        raise UserError(f"replica studio token {action}: --contributor is required")
    if action == "create":
        token = create_token(site, contributor)
        return (
            f"{token}\n(studio token for {contributor!r}, stored hashed in {site.tokens_db}; "
            "it is not shown again: paste it on the studio's sign-in page)"
        )
    if action == "revoke":
        revoke_key(site.tokens_db, check_slug(contributor))
        return f"revoked the studio token of {contributor!r}"
    raise UserError(f"replica studio token: unknown action {action!r} (create, revoke, list)")


def request_token(request: Request) -> str | None:
    """The token a request carries: the sign-in cookie, else a Bearer header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def signed_in(tokens: KeyStore, request: Request) -> str:
    """The contributor whose token the request carries, or 401."""
    token = request_token(request)
    if token is None:
        raise StudioError(401, "sign in first: paste the token from `replica studio token create`")
    contributor = tokens.consumer(token)
    if contributor is None:
        raise StudioError(401, "this studio token is unknown or was revoked; ask for a new one")
    return contributor


def owner(tokens: KeyStore, request: Request, contributor: str) -> str:
    """The signed-in contributor, who must be the one the page belongs to (else 403)."""
    me = signed_in(tokens, request)
    if me != contributor:
        raise StudioError(403, f"signed in as {me!r}: the pages of {contributor!r} are theirs only")
    return me

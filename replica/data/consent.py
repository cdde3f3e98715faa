"""Consent: whose records may train. Revoked or missing `train` consent excludes a contributor's records.

Excluded records are counted per contributor and never copied anywhere (not even into
rejected.jsonl): a contributor who said no must not find their words in a prepared directory.
"""

from __future__ import annotations

from replica.data.records import Contributor


def train_exclusion(contributor: Contributor | None) -> str | None:
    """Why this contributor's records may not train, or None when they may.

    An unknown contributor is not a consent question (it is a validation error), so None.
    """
    if contributor is None:
        return None
    if contributor.consent.revoked_at is not None:
        return f"consent revoked at {contributor.consent.revoked_at.isoformat()}"
    if contributor.consent.train != "allowed":
        return "no consent to train (consent.train is not_allowed)"
    return None


def consent_scope(contributor: Contributor) -> dict[str, str]:
    """The consent as recorded in manifests: each scope, license, grant and revocation times."""
    return contributor.consent.model_dump(mode="json")

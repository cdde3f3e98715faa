"""What every studio route shares: the page renderer, the signed-in owner check, CSRF and form reading.

`Studio` holds the app's state (site, tokens, CSRF secret, model runner, templates). A route
calls `studio.owner(request, cid)` first (401 / 403), then, for a POST, `studio.form(request)`,
which reads a size-limited form body (400 when it is not a form) and refuses it without a
valid CSRF token (403).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from replica.agents.keys import KeyStore
from replica.studio.auth import StudioError, owner, request_token
from replica.studio.csrf import FIELD, Csrf
from replica.studio.review import Runner
from replica.studio.site import StudioSite

TEMPLATES = Path(__file__).parent / "templates"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def template_environment() -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template: whatever a contributor typed is shown as text."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


@dataclass
class Studio:
    """The state of one studio app."""

    site: StudioSite
    runner: Runner
    csrf: Csrf = field(default_factory=Csrf)
    templates: jinja2.Environment = field(default_factory=template_environment)

    def __post_init__(self) -> None:
        self.tokens = KeyStore(self.site.tokens_db)

    def owner(self, request: Request, contributor: str) -> str:
        """401 without a valid token, 403 when the page belongs to someone else."""
        return owner(self.tokens, request, contributor)

    async def form(self, request: Request) -> dict[str, str]:
        """The submitted form as {field: value}; 400 for anything but a plain form, 403 without CSRF."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in FORM_TYPES:
            raise StudioError(
                400, f"expected a form body ({FORM_TYPES[0]}), found {kind or 'no content type'}"
            )
        try:
            submitted = await request.form(max_files=0)
        except Exception as err:  # the form parser's own errors: a body that is not a form
            raise StudioError(400, f"malformed form body ({type(err).__name__}: {err})") from None
        values: dict[str, str] = {}
        for key, value in submitted.multi_items():
            if not isinstance(value, str):
                raise StudioError(400, f"form field {key!r}: files are not accepted")
            if key in values:
                raise StudioError(400, f"form field {key!r} was sent twice")
            values[key] = value
        if not self.csrf.valid(request_token(request), values.pop(FIELD, None)):
            raise StudioError(
                403, "this form's CSRF token is missing or wrong: reload the page and submit again"
            )
        return values

    def page(self, request: Request, name: str, contributor: str | None, code: int = 200, **context: Any):
        """Render `templates/<name>.html` with the navigation and the form token of the session."""
        token = request_token(request)
        body = self.templates.get_template(f"{name}.html").render(
            contributor=contributor,
            csrf=self.csrf.token_for(token) if token and contributor else "",
            csrf_field=FIELD,
            **context,
        )
        return HTMLResponse(body, status_code=code)


def need(form: dict[str, str], key: str) -> str:
    """A form field the route cannot do without (400 naming it when absent)."""
    if key not in form:
        raise StudioError(400, f"form field {key!r} is missing")
    return form[key]


def go(url: str) -> RedirectResponse:
    """Post/redirect/get: after a change, the browser loads the page anew (303: GET)."""
    return RedirectResponse(url, status_code=303)

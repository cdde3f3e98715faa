"""`replica studio`: the contributors' web app over one run (sign-in, home, and the page routers).

Order of checks on every contributor page: body size (413), token (401), the page's owner (403),
for a form: form shape (400) and CSRF token (403), then the page's own checks (400 / 404).
Every response carries a Content-Security-Policy that allows only the studio's own script and
style files, so even a value that escaped escaping could not run.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from replica.agents.wire import BodyLimit
from replica.data.sources import iter_items
from replica.errors import UserError
from replica.studio import routes_account, routes_record, routes_review
from replica.studio.auth import COOKIE, StudioError, signed_in
from replica.studio.csrf import SIGNIN_COOKIE, new_signin_value, signin_valid
from replica.studio.review import Runner
from replica.studio.site import StudioSite, load_site
from replica.studio.web import Studio, go

MAX_BODY_BYTES = 256_000  # a demonstration typed by hand is a few KB; anything far larger is a mistake
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    site: StudioSite, runner: Runner | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The studio app over `site`; `runner` loads and runs replicas for reviews."""
    studio = Studio(site, runner or Runner(site))
    app = FastAPI(title="replica studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, err: StudioError) -> HTMLResponse:
        return studio.page(request, "error", None, err.status, status=err.status, message=err.message)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, err: UserError) -> HTMLResponse:
        return studio.page(request, "error", None, 400, status=400, message=str(err))

    @app.get("/")
    async def root(request: Request):
        try:
            return go(f"/c/{signed_in(studio.tokens, request)}/")
        except StudioError:
            return go("/signin")

    @app.get("/signin")
    async def signin_page(request: Request):
        value = request.cookies.get(SIGNIN_COOKIE) or new_signin_value()
        response = studio.page(request, "signin", None, signin_csrf=value, message="")
        response.set_cookie(SIGNIN_COOKIE, value, httponly=True, samesite="strict")
        return response

    @app.post("/signin")
    async def signin(request: Request):
        form = dict(await request.form()) if _is_form(request) else {}
        if not signin_valid(request.cookies.get(SIGNIN_COOKIE), form.get("csrf_token")):
            raise StudioError(403, "the sign-in form's CSRF token is missing or wrong: reload the page")
        token = str(form.get("token", "")).strip()
        contributor = studio.tokens.consumer(token) if token else None
        if contributor is None:
            value = request.cookies.get(SIGNIN_COOKIE, "")
            message = "unknown or revoked token: paste the one `replica studio token create` printed"
            return studio.page(request, "signin", None, 401, signin_csrf=value, message=message)
        response = go(f"/c/{contributor}/")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.post("/signout")
    async def signout(request: Request):
        signed_in(studio.tokens, request)
        await studio.form(request)
        response = go("/signin")
        response.delete_cookie(COOKIE)
        return response

    @app.get("/c/{cid}/")
    async def home(request: Request, cid: str):
        studio.owner(request, cid)
        return studio.page(request, "home", cid, counts=_counts(site, cid), data_file=site.data_file(cid))

    for module in (routes_record, routes_review, routes_account):
        app.include_router(module.router(studio))
    return app


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise StudioError(
            400, f"expected a form body (application/x-www-form-urlencoded), found {kind or 'none'}"
        )
    return True


def _counts(site: StudioSite, contributor: str) -> dict[str, int]:
    """How many records of each kind the contributor's file holds (tasks: all tasks in it)."""
    counts: Counter = Counter()
    path = site.data_file(contributor)
    if path.is_file():
        for item in iter_items(path):
            obj = item.obj or {}
            if obj.get("kind") == "task" or obj.get("contributor_id") == contributor:
                counts[str(obj.get("kind"))] += 1
    return dict(sorted(counts.items()))


def run_studio(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8100,
    config_path: str | Path | None = None,
    serve_config_path: str | Path | None = None,
    device: str = "auto",
) -> None:
    """`replica studio`: serve the studio of `run_dir` until interrupted."""
    import uvicorn

    site = load_site(run_dir, config_path, serve_config_path)
    app = create_app(site, Runner(site, device=device))
    print(
        f"replica studio: http://{host}:{port}/  (run {site.run_dir}, config {site.config_path})",
        file=sys.stderr,
    )
    print("  sign in with a token from: replica studio token create --contributor ID", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")

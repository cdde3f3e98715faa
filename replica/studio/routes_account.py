"""Consent and earnings pages of a contributor."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from replica.studio import consent
from replica.studio.auth import StudioError
from replica.studio.earnings import earnings, plot_png
from replica.studio.web import Studio, go, need

CHOICES = ("allowed", "not_allowed")


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    site = studio.site

    @routes.get("/c/{cid}/consent")
    async def consent_page(request: Request, cid: str):
        studio.owner(request, cid)
        record = await run_in_threadpool(consent.current, site, cid)
        if record is None:
            raise StudioError(404, f"no contributor record for {cid!r} in {site.consent_files()}")
        return studio.page(
            request,
            "consent",
            cid,
            record=record,
            scopes=consent.SCOPES,
            files=site.consent_files(),
            changed=request.query_params.get("changed", ""),
        )

    @routes.post("/c/{cid}/consent")
    async def consent_change(request: Request, cid: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        scopes = {}
        for scope in consent.SCOPES:
            value = need(form, scope)
            if value not in CHOICES:
                raise StudioError(400, f"{scope}: expected allowed or not_allowed, found {value!r}")
            scopes[scope] = value
        await run_in_threadpool(consent.change, site, cid, scopes, "grant")
        return go(f"/c/{cid}/consent?changed=saved")

    @routes.post("/c/{cid}/consent/revoke")
    async def consent_revoke(request: Request, cid: str):
        studio.owner(request, cid)
        await studio.form(request)
        await run_in_threadpool(consent.change, site, cid, None, "revoke")
        return go(f"/c/{cid}/consent?changed=revoked")

    @routes.get("/c/{cid}/earnings")
    async def earnings_page(request: Request, cid: str):
        studio.owner(request, cid)
        report = await run_in_threadpool(earnings, site, cid)
        return studio.page(request, "earnings", cid, report=report, currency=site.serve.currency)

    @routes.get("/c/{cid}/earnings.png")
    async def earnings_plot(request: Request, cid: str):
        studio.owner(request, cid)
        report = await run_in_threadpool(earnings, site, cid)
        png = await run_in_threadpool(plot_png, report, site.serve.currency)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    return routes

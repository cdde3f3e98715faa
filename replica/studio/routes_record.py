"""The Record pages: pick a task or write one, call the environment's tools, type the reply, save."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from replica.agents.envs.base import available_environments
from replica.data.records import Task
from replica.studio import record
from replica.studio.auth import StudioError
from replica.studio.forms import arguments_from_form, tool_forms
from replica.studio.store import NotSaved
from replica.studio.web import Studio, go, need


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    site = studio.site

    def draft_of(cid: str, draft_id: str) -> dict:
        try:
            return record.load_draft(site, cid, draft_id)
        except FileNotFoundError:
            raise StudioError(404, f"no unsaved recording {draft_id!r} (it was saved or discarded)") from None

    def draft_page(request: Request, cid: str, draft: dict, status: int = 200, **extra):
        return studio.page(
            request,
            "draft",
            cid,
            status,
            draft=draft,
            forms=tool_forms(record.tools_of(draft)),
            **({"problems": [], "call_error": None, "reply": ""} | extra),
        )

    @routes.get("/c/{cid}/record")
    async def record_home(request: Request, cid: str):
        studio.owner(request, cid)
        tasks = await run_in_threadpool(record.own_tasks, site, cid)
        drafts_dir = site.drafts_dir(cid, "record")
        drafts = sorted(p.stem for p in drafts_dir.glob("*.json")) if drafts_dir.is_dir() else []
        return studio.page(
            request,
            "record",
            cid,
            tasks=list(tasks.values()),
            environments=available_environments(),
            drafts=drafts,
            saved=request.query_params.get("saved", ""),
            data_file=site.data_file(cid),
            error="",
        )

    @routes.post("/c/{cid}/record/start")
    async def record_start(request: Request, cid: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        if form.get("task_id"):
            task: Task | None = (await run_in_threadpool(record.own_tasks, site, cid)).get(form["task_id"])
            if task is None:
                raise StudioError(400, f"task {form['task_id']!r} is not one of your tasks")
        else:
            task = record.new_task(
                need(form, "instruction"),
                need(form, "env"),
                form.get("initial_state", ""),
                form.get("system"),
            )
        draft_id = await run_in_threadpool(record.start_draft, site, cid, task)
        return go(f"/c/{cid}/record/{draft_id}")

    @routes.get("/c/{cid}/record/{draft_id}")
    async def record_draft(request: Request, cid: str, draft_id: str):
        studio.owner(request, cid)
        return draft_page(request, cid, draft_of(cid, draft_id))

    @routes.post("/c/{cid}/record/{draft_id}/call")
    async def record_call(request: Request, cid: str, draft_id: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        draft = draft_of(cid, draft_id)
        name = need(form, "tool")
        tools = {t["function"]["name"]: t["function"] for t in record.tools_of(draft)}
        if name not in tools:
            raise StudioError(400, f"tool {name!r} is not a tool of this environment ({', '.join(tools)})")
        arguments, problems = arguments_from_form(tools[name], form)
        if problems:
            shown = "; ".join(f"{field}: {why}" for field, why in problems.items())
            return draft_page(request, cid, draft, 400, call_error=f"{name}: {shown}")
        error = await run_in_threadpool(record.call_tool, site, cid, draft, name, arguments)
        if error:
            return draft_page(request, cid, draft, 400, call_error=error)
        return go(f"/c/{cid}/record/{draft_id}#steps")

    @routes.post("/c/{cid}/record/{draft_id}/undo")
    async def record_undo(request: Request, cid: str, draft_id: str):
        studio.owner(request, cid)
        await studio.form(request)
        draft = draft_of(cid, draft_id)
        if not await run_in_threadpool(record.undo_last_call, site, cid, draft):
            return draft_page(request, cid, draft, 400, call_error="there is no tool call to undo")
        return go(f"/c/{cid}/record/{draft_id}#steps")

    @routes.post("/c/{cid}/record/{draft_id}/save")
    async def record_save(request: Request, cid: str, draft_id: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        draft = draft_of(cid, draft_id)
        reply = need(form, "reply")
        try:
            saved = await run_in_threadpool(record.finish, site, cid, draft, reply)
        except NotSaved as err:
            return draft_page(request, cid, draft, 400, problems=err.problems, reply=reply)
        return go(f"/c/{cid}/record?saved={saved}")

    @routes.post("/c/{cid}/record/{draft_id}/discard")
    async def record_discard(request: Request, cid: str, draft_id: str):
        studio.owner(request, cid)
        await studio.form(request)
        draft_of(cid, draft_id)
        record.discard_draft(site, cid, draft_id)
        return go(f"/c/{cid}/record")

    return routes

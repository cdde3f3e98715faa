"""The Review pages: run a task with a replica, see each step, rate / critique / rewrite / choose."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from replica.studio import record, review
from replica.studio.auth import StudioError
from replica.studio.store import NotSaved
from replica.studio.web import Studio, go, need

SCORES = ("1", "2", "3", "4", "5")


def _step_and_call(form: dict[str, str]) -> tuple[int | None, dict | None]:
    """Which turn a rewrite replaces (None: the final reply) and the tool call it should have been."""
    step_text = form.get("step", "final")
    if step_text != "final" and not step_text.isdigit():
        raise StudioError(400, f"step: expected final or a step number, found {step_text!r}")
    step = None if step_text == "final" else int(step_text)
    tool = form.get("rewrite_tool", "")
    if not tool:
        return step, None
    if step is None:
        raise StudioError(400, "rewrite_tool: a tool call replaces a step; choose which step")
    try:
        arguments = json.loads(form.get("rewrite_arguments") or "{}")
    except json.JSONDecodeError as err:
        raise StudioError(400, f"rewrite_arguments: not JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(arguments, dict):
        raise StudioError(400, f"rewrite_arguments: expected a JSON object, found {type(arguments).__name__}")
    return step, {"name": tool, "arguments": arguments}


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    site = studio.site

    def review_of(cid: str, review_id: str) -> dict:
        try:
            return review.load_review(site, cid, review_id)
        except FileNotFoundError:
            raise StudioError(404, f"no review {review_id!r}") from None

    def review_page(request: Request, cid: str, data: dict, status: int = 200, **extra):
        samples = data["samples"]
        return studio.page(
            request,
            "review_result",
            cid,
            status,
            review=data,
            samples=[review.split(s["messages"]) for s in samples],
            reply=review.final_reply(review.split(samples[0]["messages"])[1]),
            feedback=review.saved_feedback(site, cid, data["id"]),
            **({"problems": [], "saved": request.query_params.get("saved", "")} | extra),
        )

    @routes.get("/c/{cid}/review")
    async def review_home(request: Request, cid: str):
        studio.owner(request, cid)
        tasks = await run_in_threadpool(record.own_tasks, site, cid)
        return studio.page(
            request, "review", cid, tasks=list(tasks.values()), stages=review.stages(site, cid)
        )

    @routes.post("/c/{cid}/review/run")
    async def review_run(request: Request, cid: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        task = (await run_in_threadpool(record.own_tasks, site, cid)).get(need(form, "task_id"))
        if task is None:
            raise StudioError(400, f"task {form['task_id']!r} is not one of your tasks")
        stage = need(form, "stage")
        if stage not in review.stages(site, cid):
            raise StudioError(400, f"stage {stage!r}: expected one of {', '.join(review.stages(site, cid))}")
        samples = need(form, "samples")
        if samples not in ("1", "2"):
            raise StudioError(400, f"samples: expected 1 or 2, found {samples!r}")
        review_id = await run_in_threadpool(
            review.start_review, site, cid, studio.runner, task, stage, int(samples)
        )
        return go(f"/c/{cid}/review/{review_id}")

    @routes.get("/c/{cid}/review/{review_id}")
    async def review_show(request: Request, cid: str, review_id: str):
        studio.owner(request, cid)
        return review_page(request, cid, review_of(cid, review_id))

    @routes.post("/c/{cid}/review/{review_id}/judge")
    async def review_judge(request: Request, cid: str, review_id: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        data = review_of(cid, review_id)
        score = form.get("score", "")
        if score not in ("", *SCORES):
            raise StudioError(400, f"score: expected 1 to 5, found {score!r}")
        step, call = _step_and_call(form)
        try:
            saved = await run_in_threadpool(
                review.save_judgment,
                site,
                cid,
                data,
                int(score) if score else None,
                form.get("critique", ""),
                form.get("rewrite", ""),
                step,
                call,
            )
        except NotSaved as err:
            return review_page(request, cid, data, 400, problems=err.problems)
        return go(f"/c/{cid}/review/{review_id}?saved={','.join(saved)}")

    @routes.post("/c/{cid}/review/{review_id}/choose")
    async def review_choose(request: Request, cid: str, review_id: str):
        studio.owner(request, cid)
        form = await studio.form(request)
        data = review_of(cid, review_id)
        better = need(form, "better")
        if len(data["samples"]) != 2 or better not in ("0", "1"):
            raise StudioError(400, f"better: expected 0 or 1 of a two-sample review, found {better!r}")
        try:
            saved = await run_in_threadpool(review.save_choice, site, cid, data, int(better))
        except NotSaved as err:
            return review_page(request, cid, data, 400, problems=err.problems)
        return go(f"/c/{cid}/review/{review_id}?saved={','.join(saved)}")

    return routes

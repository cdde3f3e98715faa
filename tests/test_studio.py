"""The studio through its HTTP app: sign-in, 401/403 on every route, CSRF, escaping, records, consent, earnings."""
# ruff: noqa: F811  (pytest fixtures imported from the fixture modules)

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from studio_fixtures import csrf_of, studio_run  # noqa: F401

from replica.data.validate import validate_paths
from replica.studio.app import create_app
from replica.studio.auth import create_token
from replica.studio.review import Runner
from replica.studio.site import load_site


@pytest.fixture(scope="module")
def studio(studio_run):
    """The studio app over the test run, and a sign-in token for alice and for bob."""
    site = load_site(studio_run)
    tokens = {c: create_token(site, c) for c in ("alice", "bob")}
    app = create_app(site, Runner(site, device="cpu", max_turns=2, max_new_tokens=16), max_body_bytes=20_000)
    with TestClient(app) as client:
        yield client, site, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf(client, token: str, cid: str = "alice") -> str:
    return csrf_of(client.get(f"/c/{cid}/", headers=bearer(token)).text)


def post(client, token: str, url: str, data: dict, with_csrf: bool = True):
    if with_csrf:
        data = {"csrf_token": csrf(client, token), **data}
    return client.post(url, data=data, headers=bearer(token), follow_redirects=False)


def snapshot(site) -> dict[str, bytes]:
    """Every file the studio may write (records, consent), to show that a refused request wrote nothing."""
    paths = [site.data_file("alice"), site.data_file("bob"), *site.consent_files()]
    return {str(p): p.read_bytes() for p in paths}


def start_draft(client, token: str) -> str:
    response = post(client, token, "/c/alice/record/start", {"task_id": "alice-refund"})
    assert response.status_code == 303
    return response.headers["location"].rsplit("/", 1)[1]


def start_review(client, token: str, samples: str = "1") -> str:
    body = {"task_id": "alice-refund", "stage": "sft", "samples": samples}
    response = post(client, token, "/c/alice/review/run", body)
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[1]


# --------------------------------------------------------------------------- sign-in and access


def test_sign_in_sets_an_httponly_cookie_and_refuses_a_wrong_token(studio):
    client, _, tokens = studio
    browser = TestClient(client.app)
    page = browser.get("/signin")
    assert page.status_code == 200 and 'type="password"' in page.text
    wrong = browser.post("/signin", data={"csrf_token": csrf_of(page.text), "token": "rk-nope"})
    assert wrong.status_code == 401 and "unknown or revoked token" in wrong.text
    forged = TestClient(client.app).post("/signin", data={"token": tokens["alice"]}, follow_redirects=False)
    assert forged.status_code == 403  # no sign-in CSRF cookie + field
    response = browser.post(
        "/signin", data={"csrf_token": csrf_of(page.text), "token": tokens["alice"]}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/c/alice/"
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    home = browser.get("/c/alice/")
    assert home.status_code == 200 and "Welcome, alice" in home.text
    assert "script-src" not in home.headers["content-security-policy"]  # default-src 'self' only
    assert browser.get("/c/bob/").status_code == 403


def contributor_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every contributor page, including those of included routers."""
    found, pending = set(), list(app.routes)
    while pending:
        route = pending.pop()
        if hasattr(route, "original_router"):  # FastAPI's wrapper of an included APIRouter
            pending.extend(route.original_router.routes)
        elif getattr(route, "path", "").startswith("/c/{cid}"):
            found.update((method, route.path) for method in route.methods if method != "HEAD")
    return found


def test_every_contributor_route_is_401_without_a_token_and_403_for_another_contributor(studio):
    client, site, tokens = studio
    draft, review = start_draft(client, tokens["alice"]), start_review(client, tokens["alice"])
    routes = contributor_routes(client.app)
    assert len(routes) == 18  # a new route must be added to this test's reach (it is, by enumeration)
    before = snapshot(site)
    for method, path in sorted(routes):
        url = path.replace("{cid}", "alice").replace("{draft_id}", draft).replace("{review_id}", review)
        for headers, status in (({}, 401), (bearer("rk-wrong"), 401), (bearer(tokens["bob"]), 403)):
            data = {"csrf_token": csrf(client, tokens["bob"], "bob")} if method == "POST" else None
            response = client.request(method, url, headers=headers, data=data, follow_redirects=False)
            assert response.status_code == status, (method, url, headers, response.text[:200])
        alice = client.request(method, url, headers=bearer(tokens["alice"]), follow_redirects=False)
        assert alice.status_code != 401 and alice.status_code != 403 or method == "POST", (method, url)
    assert snapshot(site) == before


def test_a_form_without_the_right_csrf_token_is_refused_and_writes_nothing(studio):
    client, site, tokens = studio
    before = snapshot(site)
    scopes = {"train": "not_allowed", "serve": "not_allowed", "share": "not_allowed"}
    for extra in ({}, {"csrf_token": "0" * 64}, {"csrf_token": csrf(client, tokens["bob"], "bob")}):
        response = post(client, tokens["alice"], "/c/alice/consent", scopes | extra, with_csrf=False)
        assert response.status_code == 403 and "CSRF" in response.text
    assert snapshot(site) == before


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        (
            {"content": b"x" * 30_000, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            413,
            "limit",
        ),
        ({"json": {"train": "allowed"}}, 400, "expected a form body"),
        ({"files": {"upload": ("a.txt", b"hi")}}, 400, "Maximum number of files is 0"),
        (
            {
                "content": b"train=allowed&train=not_allowed",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            400,
            "sent twice",
        ),
    ],
)
def test_oversized_or_malformed_bodies_get_a_clear_error_and_write_nothing(studio, kwargs, status, says):
    client, site, tokens = studio
    before = snapshot(site)
    kwargs = dict(kwargs)
    headers = bearer(tokens["alice"]) | kwargs.pop("headers", {})
    response = client.post("/c/alice/consent", headers=headers, **kwargs)
    assert response.status_code == status and says in response.text
    assert snapshot(site) == before


def test_a_missing_field_is_named(studio):
    client, site, tokens = studio
    before = snapshot(site)
    response = post(client, tokens["alice"], "/c/alice/consent", {"train": "allowed", "serve": "allowed"})
    assert response.status_code == 400 and "form field &#39;share&#39; is missing" in response.text
    assert snapshot(site) == before


# --------------------------------------------------------------------------- record


def test_recording_through_the_tool_forms_saves_a_valid_demonstration(studio):
    client, site, tokens = studio
    token = tokens["alice"]
    draft = start_draft(client, token)
    page = client.get(f"/c/alice/record/{draft}", headers=bearer(token)).text
    assert 'id="tool-get_order"' in page and 'name="arg.order_id"' in page and "required" in page
    assert 'id="undo"' not in page  # nothing to take back yet
    assert 'id="issue_refund-amount" name="arg.amount" type="number" step="1"' in page
    bad = post(
        client,
        token,
        f"/c/alice/record/{draft}/call",
        {"tool": "issue_refund", "arg.order_id": "O-7", "arg.amount": "ten"},
    )
    assert bad.status_code == 400 and "amount: expected a whole number" in bad.text
    for tool, args in (
        ("get_order", {"arg.order_id": "O-7"}),
        ("issue_refund", {"arg.order_id": "O-7", "arg.amount": "30"}),
    ):
        assert post(client, token, f"/c/alice/record/{draft}/call", {"tool": tool, **args}).status_code == 303
    page = client.get(f"/c/alice/record/{draft}", headers=bearer(token)).text
    assert "&#34;refunded&#34;: 30" in page  # the sandbox ran the call: its result is shown
    assert 'id="undo"' in page  # a call can be taken back
    saved = post(client, token, f"/c/alice/record/{draft}/save", {"reply": "Your $30 refund is on its way."})
    assert saved.status_code == 303
    demo_id = saved.headers["location"].split("saved=")[1]
    lines = [json.loads(line) for line in site.data_file("alice").read_text().splitlines()]
    demo = next(r for r in lines if r.get("id") == demo_id)
    assert demo["kind"] == "demonstration" and demo["task_id"] == "alice-refund"
    assert [m["role"] for m in demo["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert demo["messages"][5]["tool_call_id"] == "call_2"
    report = validate_paths([site.config.data.contributors_file, site.data_file("alice")])
    assert report.ok, report.problems


def test_a_record_validate_would_reject_is_not_saved_and_the_form_says_why(studio):
    client, site, tokens = studio
    draft = start_draft(client, tokens["alice"])
    before = snapshot(site)
    response = post(client, tokens["alice"], f"/c/alice/record/{draft}/save", {"reply": "   "})
    assert response.status_code == 400
    assert "empty assistant turn" in response.text and "cannot be saved" in response.text
    assert snapshot(site) == before


def test_a_new_instruction_is_saved_with_its_task_and_initial_state_and_shown_escaped(studio):
    client, site, tokens = studio
    token = tokens["alice"]
    state = {
        "customers": {},
        "orders": {},
        "products": {},
        "tickets": {"T-1": {"customer_id": "C-1", "status": "open"}},
    }
    body = {
        "instruction": "Close T-1 <script>alert(1)</script>",
        "env": "support_desk",
        "initial_state": json.dumps(state),
    }
    response = post(client, token, "/c/alice/record/start", body)
    draft = response.headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/c/alice/record/{draft}", headers=bearer(token)).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert (
        post(
            client, token, f"/c/alice/record/{draft}/call", {"tool": "close_ticket", "arg.ticket_id": "T-1"}
        ).status_code
        == 303
    )
    assert post(client, token, f"/c/alice/record/{draft}/save", {"reply": "Closed."}).status_code == 303
    lines = [json.loads(line) for line in site.data_file("alice").read_text().splitlines()]
    task, demo = lines[-2], lines[-1]
    assert task["kind"] == "task" and task["initial_state"] == state and task["env"] == "support_desk"
    assert demo["kind"] == "demonstration" and demo["task_id"] == task["id"]
    bad = post(
        client,
        token,
        "/c/alice/record/start",
        {"instruction": "x", "env": "support_desk", "initial_state": "[1"},
    )
    assert bad.status_code == 400 and "initial state: not JSON" in bad.text


# --------------------------------------------------------------------------- review


def test_review_shows_the_steps_and_saves_a_rating_and_a_rewrite_escaped(studio):
    client, site, tokens = studio
    token = tokens["alice"]
    review = start_review(client, token)
    page = client.get(f"/c/alice/review/{review}", headers=bearer(token)).text
    assert "What the replica did" in page and 'name="score"' in page
    critique = "Wrong tool. <script>alert('x')</script>"
    body = {"score": "2", "critique": critique, "rewrite": "I refunded your $30."}
    response = post(client, token, f"/c/alice/review/{review}/judge", body)
    assert response.status_code == 303, response.text
    page = client.get(response.headers["location"], headers=bearer(token)).text
    assert "<script>alert(" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    saved = [json.loads(line) for line in site.data_file("alice").read_text().splitlines()][-2:]
    assert [r["kind"] for r in saved] == ["rating", "rewrite"]
    assert saved[0]["score"] == 2 and saved[0]["critique"] == critique
    assert saved[1]["rewritten"][-1] == {"role": "assistant", "content": "I refunded your $30."}
    assert validate_paths([site.config.data.contributors_file, site.data_file("alice")]).ok


def test_review_of_two_samples_saves_the_chosen_one_as_a_preference(studio):
    client, site, tokens = studio
    review = start_review(client, tokens["alice"], samples="2")
    response = post(client, tokens["alice"], f"/c/alice/review/{review}/choose", {"better": "1"})
    assert response.status_code == 303, response.text
    pair = json.loads(site.data_file("alice").read_text().splitlines()[-1])
    shown = json.loads((site.drafts_dir("alice", "review") / f"{review}.json").read_text())
    assert pair["kind"] == "preference"
    assert pair["chosen"] == shown["samples"][1]["messages"][len(pair["prompt"]) :]
    nothing = post(client, tokens["alice"], f"/c/alice/review/{review}/judge", {"critique": "meh"})
    assert nothing.status_code == 400 and "nothing to save" in nothing.text


def test_a_step_can_be_rewritten_as_the_tool_call_it_should_have_been(studio):
    client, site, tokens = studio
    token = tokens["alice"]
    review = start_review(client, token)
    page = client.get(f"/c/alice/review/{review}", headers=bearer(token)).text
    assert '<option value="2">step 3' in page  # the replica's first turn (after system and user)
    before = snapshot(site)
    wrong = {"step": "2", "rewrite_tool": "get_order", "rewrite_arguments": '{"order_id": 7}'}
    response = post(client, token, f"/c/alice/review/{review}/judge", wrong)
    assert response.status_code == 400 and "rewritten[0].tool_calls[0].function.arguments" in response.text
    assert snapshot(site) == before  # validate would reject it: nothing written
    right = wrong | {"rewrite_arguments": '{"order_id": "O-7"}', "critique": "Look the order up first."}
    assert post(client, token, f"/c/alice/review/{review}/judge", right).status_code == 303
    saved = json.loads(site.data_file("alice").read_text().splitlines()[-1])
    assert saved["kind"] == "rewrite" and [m["role"] for m in saved["prompt"]] == ["system", "user"]
    call = saved["rewritten"][0]["tool_calls"][0]["function"]
    assert call == {"name": "get_order", "arguments": {"order_id": "O-7"}}
    text = post(
        client, token, f"/c/alice/review/{review}/judge", {"step": "2", "rewrite": "Let me check O-7."}
    )
    assert text.status_code == 303
    assert json.loads(site.data_file("alice").read_text().splitlines()[-1])["rewritten"] == [
        {"role": "assistant", "content": "Let me check O-7."}
    ]
    for bad, says in (
        ({"step": "x"}, "step: expected final"),
        ({"step": "0", "rewrite": "hi"}, "not one of the replica"),
        ({"rewrite_tool": "get_order"}, "choose which step"),
    ):
        response = post(client, token, f"/c/alice/review/{review}/judge", bad)
        assert response.status_code == 400 and says in response.text, bad

"""The console's pages (Starlette, Jinja2 templates). Every page: the viewer
from their certificate (auth.py), the role the page is for, the view recorded
through the coordinator before anything is shown (a view that cannot be
audited is not shown), then the data over gRPC (source.py)."""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

import grpc
from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from fedlink.identity import Identity
from server.console import views
from server.console.auth import IDENTITY_KEY, VIEWER_ROLES, Refused
from server.console.i18n import LANGUAGES, pick_language, translator
from server.console.oidc import LOGIN_PATH, OIDC_KEY, OidcConfig, oidc_routes, with_oidc_person
from server.console.source import CoordinatorSource

HERE = Path(__file__).parent
LANG_COOKIE = "fedlink-lang"
DECIDE_PATH = "/approvals/decide"  # the one page that changes anything: CSRF-checked whatever the request carries
PROPOSAL_STATES = ("pending", "approved", "rejected", "expired", "superseded", "")


def _iso(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _epoch(day: str, end: bool = False) -> float:
    """An ISO date (or date and time) from a filter field, as unix seconds; '' is no bound."""
    if not day:
        return 0.0
    try:
        moment = datetime.fromisoformat(day)
    except ValueError:
        raise Refused(400, f"{day[:30]!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() + (86400 if end and len(day) == 10 else 0)


def create_app(source: CoordinatorSource, https: bool = True, oidc: OidcConfig | None = None):
    """The console's ASGI app. `https`: its cookies are marked Secure (the test-only plain
    listener, tests/console_plain.py, is the one caller that passes False). `oidc`: people
    without a certificate sign in with that provider (server/console/oidc.py)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    async def page(request: Request, role: str | tuple[str, ...], template: str, load) -> Response:
        who = _viewer(request, role)
        language = pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
        t = translator(language)
        await run_in_threadpool(source.record_view, str(who), request.url.path, request.scope.get(OIDC_KEY, ""))
        context = await run_in_threadpool(load)
        return templates.TemplateResponse(request, template, {
            "t": t, "lang": language, "languages": LANGUAGES, "who": who, "iso": _iso,
            "csrftoken": request.scope["csrftoken"], **context})

    def _viewer(request: Request, role: str | tuple[str, ...]) -> Identity:
        who = request.scope.get(IDENTITY_KEY)
        if not isinstance(who, Identity):
            raise Refused(401, f"no usable client certificate: {who}" + (
                f"; or sign in at {LOGIN_PATH}" if oidc else ""))
        if who.role not in VIEWER_ROLES:
            raise Refused(403, f"the console is for operators and privacy officers; your certificate says {who.role}")
        if who.role not in (role if isinstance(role, tuple) else (role,)):
            raise Refused(403, f"this page is for the {role} role; you are signed in as {who}")
        return who

    async def home(request: Request):
        who = request.scope.get(IDENTITY_KEY)
        if isinstance(who, Identity) and who.role == "officer":
            return RedirectResponse("/audit", 303)
        return RedirectResponse("/projects", 303)

    async def projects(request: Request):
        return await page(request, "operator", "projects.html", lambda: {"projects": source.projects()})

    async def project(request: Request):
        pid = request.path_params["project_id"]
        return await page(request, "operator", "project.html", lambda: views.project_page(source, pid))

    async def run(request: Request):
        rid = request.path_params["run_id"]
        return await page(request, "operator", "run.html", lambda: views.run_page(source, rid))

    async def progress(request: Request):
        rid = request.path_params["run_id"]
        return await page(request, "operator", "progress.html", lambda: {"run_id": rid})

    async def progress_events(request: Request):
        """Server-sent events: each RunProgress of WatchRun as one JSON event, until the run ends."""
        _viewer(request, "operator")
        rid = request.path_params["run_id"]

        async def stream():
            async for p in iterate_in_threadpool(source.progress(rid)):
                yield f"data: {json.dumps(p)}\n\n"
            yield "event: end\ndata: {}\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def audit(request: Request):
        f = {k: request.query_params.get(k, "").strip()[:64] for k in ("actor", "kind", "department", "since",
                                                                        "until")}
        return await page(request, "officer", "audit.html", lambda: views.audit_page(
            source, f, _epoch(f["since"]), _epoch(f["until"], end=True)))

    async def checkpoint(request: Request):
        return await page(request, "officer", "checkpoint.html", lambda: {"checkpoint": source.latest_checkpoint()})

    async def inclusion(request: Request):
        raw = request.query_params.get("seq", "").strip()
        if raw and not raw.isdigit():
            raise Refused(400, f"event number {raw[:20]!r} is not a whole number")
        return await page(request, "officer", "inclusion.html", lambda: {
            "seq": raw, "check": source.inclusion(int(raw)) if raw else None})

    async def access(request: Request):
        department = request.query_params.get("department", "").strip()[:64]
        run_id = request.query_params.get("run", "").strip()[:64]
        return await page(request, "officer", "access.html", lambda: {
            "department": department, "run_id": run_id, "report": source.access(department, run_id)})

    async def approvals(request: Request):
        project_id = request.query_params.get("project", "").strip()[:64]
        state = request.query_params.get("state", "pending")
        if state not in PROPOSAL_STATES:
            raise Refused(400, f"state {state[:20]!r}: one of {', '.join(s for s in PROPOSAL_STATES if s)}, or empty")
        role = _viewer(request, VIEWER_ROLES).role
        return await page(request, VIEWER_ROLES, "approvals.html", lambda: {
            "project_id": project_id, "state": state, "states": PROPOSAL_STATES,
            "proposals": source.proposals(role, project_id, state)})

    async def proposal(request: Request):
        pid = request.path_params["proposal_id"]
        role = _viewer(request, VIEWER_ROLES).role
        return await page(request, VIEWER_ROLES, "proposal.html", lambda: {"p": source.proposal(role, pid)})

    async def decide(request: Request):
        """An officer's approval or rejection, from the form on a proposal's page (CSRF-checked by
        asgi_csrf before it gets here); the coordinator records it as that officer's decision."""
        who = _viewer(request, "officer")
        form = await request.form()
        pid, verdict = str(form.get("proposal_id", ""))[:64], form.get("verdict")
        if verdict not in ("approve", "reject"):
            raise Refused(400, "verdict: approve or reject")
        await run_in_threadpool(source.decide, pid, verdict, str(form.get("note", ""))[:500], str(who),
                                request.scope.get(OIDC_KEY, ""))
        return RedirectResponse(f"/approvals/{pid}", 303)

    async def language(request: Request):
        code = request.path_params["code"]
        back = request.query_params.get("next", "/")
        response = RedirectResponse(back if back.startswith("/") and not back.startswith("//") else "/", 303)
        if code in LANGUAGES:
            response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, secure=https,
                                httponly=True, samesite="strict")
        return response

    async def refused(request: Request, exc: Refused):
        if exc.status == 401 and oidc and request.method == "GET":
            return RedirectResponse(LOGIN_PATH, 303)  # no certificate: the site's provider signs the person in
        return _error_page(templates, request, exc.status, exc.message)

    async def rpc_failed(request: Request, exc: grpc.RpcError):
        status = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.PERMISSION_DENIED: 403,
                  grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 409}.get(exc.code(), 502)
        return _error_page(templates, request, status, f"{exc.code().name}: {exc.details()}")

    routes = [
        Route("/", home), Route("/projects", projects), Route("/projects/{project_id}", project),
        Route("/runs/{run_id}", run), Route("/runs/{run_id}/progress", progress),
        Route("/runs/{run_id}/events", progress_events),
        Route("/audit", audit), Route("/audit/checkpoint", checkpoint), Route("/audit/inclusion", inclusion),
        Route("/audit/access", access), Route("/approvals", approvals),
        Route(DECIDE_PATH, decide, methods=["POST"]), Route("/approvals/{proposal_id}", proposal),
        Route("/lang/{code}", language),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = []
    if oidc:
        routes += oidc_routes(oidc)
        # The signed session cookie holds the OpenID person (and, during sign-in, Authlib's state, nonce and
        # PKCE verifier); its key lives as long as the process. Lax: the provider's redirect back is cross-site.
        middleware = [Middleware(SessionMiddleware, secret_key=secrets.token_hex(32), session_cookie="fedlink-session",
                                 max_age=8 * 3600, same_site="lax", https_only=https), Middleware(with_oidc_person)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={Refused: refused, grpc.RpcError: rpc_failed})
    # Double-submit token (signed cookie and form field) on every POST, the decision's path even without a
    # cookie: a browser carries the person's certificate to any site's form, so the certificate alone is no proof.
    return asgi_csrf(app, signing_secret=secrets.token_hex(32), always_protect={DECIDE_PATH}, cookie_secure=https,
                     cookie_samesite="Strict", send_csrf_failed=_csrf_failed)


async def _csrf_failed(scope, send, reason) -> None:
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": b"refused: the form's CSRF token is missing or does not match "
                b"(a form from another site, or a page from before the console restarted): open the proposal again "
                b"and decide there"})


def _error_page(templates, request: Request, status: int, message: str) -> Response:
    language = pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
    who = request.scope.get(IDENTITY_KEY)
    return templates.TemplateResponse(request, "error.html", {
        "t": translator(language), "lang": language, "languages": LANGUAGES,
        "who": who if isinstance(who, Identity) else None, "status": status, "message": message},
        status_code=status)

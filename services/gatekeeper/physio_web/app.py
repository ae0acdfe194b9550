"""The physio web app: a Starlette app the gatekeeper mounts beside FastStream's
routes (services/common/http_serving.py sends every `/physio...` request here).

| path | what |
|---|---|
| `/physio` | needs-attention queue, then the rest of the clinic (HTML) |
| `/physio/client?client=ID` | one client: what the next stage needs, actions, timeline (HTML) |
| `/physio/action` (POST) | approve, hold, regress or override, with a reason (CSRF token) |
| `/physio/api/clients` | the overview as JSON |
| `/physio/api/history?client=ID&page=1&per_page=50` | the timeline as JSON, paginated |
| `/physio/api/history.csv?client=ID` | the timeline as CSV |
| `/physio/login`, `/physio/logout` | sign-in form (sets a session cookie) and sign-out |
| `/physio/static/...` | the stylesheet |

Pages render from Jinja2 templates (`templates/`, autoescaped). People sign in as
themselves (access.py); programs read with a clinic token. Another clinic's client
and an unknown id answer the same 404, so ids cannot be probed across clinics.
Reads and actions are logged with clinic, physio and client ids and the status,
never a credential or a health value. Responses are `no-store`: they carry health data.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rehabgate.schemas.inbound import ClinicianAction
from rehabgate.schemas.publisher import AsyncPublisher
from rehabgate.schemas.signing import signer
from rehabgate.schemas.streams import INBOUND, clinic_inbound_stream
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import GatekeeperSettings
from rehabgate.services.gatekeeper.audit.export import MAX_PER_PAGE, history_page, to_csv
from rehabgate.services.gatekeeper.audit.history import Timeline, build_timeline
from rehabgate.services.gatekeeper.audit.reading import (
    ClientAudit,
    UnreadableClient,
    client_keys,
    read_client,
)
from rehabgate.services.gatekeeper.audit.verify import Verdict, verify_chain
from rehabgate.services.gatekeeper.domain.protocol import Protocol

from . import views
from .access import (
    ClinicAccess,
    Identity,
    ProxyIdentity,
    Sessions,
    presented_token,
    session_cookie,
)
from .credentials import CredentialsFile, Physio
from .overview import ClinicOverview, QueueRules, client_row, clinic_overview

HERE = Path(__file__).parent
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
NOT_FOUND = "No client with that id in your clinic."
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HTML_HEADERS = {
    **SECURITY_HEADERS,
    # No script at all, and nothing loaded from anywhere else.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
ACTIONS = ("approve", "hold", "regress", "advance_override")
Log = structlog.typing.FilteringBoundLogger


class Refused(Exception):
    """A request that ends with an error status (and a logged reason, no secrets)."""

    def __init__(self, status: int, message: str, logged: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.logged = logged or message.split(":")[0]


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(views.GLOBALS)
    env.filters.update(views.FILTERS)
    return env


class PhysioWeb:
    """The handlers' logic and what they share."""

    def __init__(
        self,
        redis: RedisClient,
        settings: GatekeeperSettings,
        log: Log,
        protocols: Mapping[str, Protocol],
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.partitions = settings.partitions
        self.protocols = protocols
        self.tokens = ClinicAccess(settings.clinic_tokens)
        self.credentials = CredentialsFile(settings.physio_credentials)
        secret = (
            settings.physio_session_secret.get_secret_value().encode()
            if settings.physio_session_secret
            else secrets.token_bytes(32)
        )
        self.sessions = Sessions(secret, settings.physio_session_max_age_s, self.credentials)
        self.proxy = ProxyIdentity(
            settings.physio_sso_header,
            settings.physio_sso_trusted_proxies,
            settings.physio_sso_secret,
            self.credentials,
        )
        self.rules = QueueRules(
            stepped_back_days=settings.physio_stepped_back_days,
            inactive_days=settings.physio_inactive_days,
            held_long_factor=settings.physio_held_long_factor,
        )
        self.env = templates()
        self.log = log

    # --- who -------------------------------------------------------------------------

    def identity(self, request: Request) -> Identity:
        session = self.sessions.identity(session_cookie(request.headers))
        if session is not None:
            return session
        clinic = self.tokens.clinic_for(presented_token(request.headers))
        if clinic is not None:
            return Identity(clinic_id=clinic)
        raise Refused(401, "sign in first")

    def proxied(self, request: Request) -> Physio | None:
        """The physio a trusted single-sign-on proxy names, when the request has no
        valid session of its own (or one of another physio)."""
        if self.proxy.header is None:
            return None
        physio = self.proxy.physio(
            request.headers, request.client.host if request.client else None
        )
        if physio is None:
            return None
        session = self.sessions.identity(session_cookie(request.headers))
        return None if session is not None and session.physio_id == physio.physio_id else physio

    # --- reads -----------------------------------------------------------------------

    async def audit(self, client: str | None, who: Identity) -> ClientAudit:
        if client is None or not CLIENT_ID.match(client):
            raise Refused(400, "query parameter 'client' must be a client id")
        keys = ClientKeys.of(client, self.partitions)
        try:
            audit = await read_client(self.redis, keys)
        except UnreadableClient as unreadable:
            # Odd records are the client's, not a server fault: the page says what
            # cannot be shown (never a 500), to their own clinic only.
            if await self._owner(keys) != who.clinic_id:
                raise Refused(404, NOT_FOUND, "not found") from None
            raise Refused(
                200,
                f"client {client}'s records cannot be read: {unreadable.reason}. Nothing "
                "else can be shown for them; the operators see it in the log "
                "(client_unreadable) and `rehabgate audit verify`.",
                "client unreadable",
            ) from None
        if audit.state is None:
            raise Refused(404, NOT_FOUND, "not found")
        if audit.state.clinic_id != who.clinic_id:
            raise Refused(404, NOT_FOUND, "another clinic's client")
        return audit

    async def _owner(self, keys: ClientKeys) -> str | None:
        try:
            owner = await self.redis.get(keys.owner)
        except RedisError:  # a key of the wrong type, too: nobody's we can tell
            return None
        return owner.decode() if isinstance(owner, bytes) else None

    async def timeline(
        self, client: str | None, who: Identity
    ) -> tuple[ClientAudit, Timeline, Verdict]:
        audit = await self.audit(client, who)
        return (
            audit,
            build_timeline(audit.client_id, audit.entries),
            verify_chain(audit.entries, audit.head),
        )

    async def overview(self, clinic: str) -> ClinicOverview:
        rows = []
        now = datetime.now(UTC)
        for keys in await client_keys(self.redis):
            try:
                audit = await read_client(self.redis, keys)
            except UnreadableClient as unreadable:  # one corrupt client hides no other
                self.log.error("client_unreadable", client_id=unreadable.client_id,
                               reason=unreadable.reason)  # fmt: skip
                continue
            if audit.state is None or audit.state.clinic_id != clinic:
                continue
            timeline = build_timeline(audit.client_id, audit.entries)
            ok = verify_chain(audit.entries, audit.head).ok
            rows.append(client_row(audit.state, timeline, ok, now, self.rules))
            await asyncio.sleep(0)  # a large clinic must not starve the consumers
        return clinic_overview(clinic, rows)

    # --- rendering -----------------------------------------------------------------

    def page(
        self,
        name: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        body = self.env.get_template(name).render(**context)
        return HTMLResponse(body, status, {**HTML_HEADERS, **(headers or {})})

    # --- acting ------------------------------------------------------------------------

    async def publish(self, audit: ClientAudit, action: ClinicianAction) -> None:
        """XADD the action to the clinic's inbound stream, as any clinic system would
        (signed when the clinic requires it): the gatekeeper validates, audits and
        decides it like every other event."""
        clinic = action.clinic_id
        if not self.settings.clinics:
            stream, sign = INBOUND, None
        else:
            config = self.settings.clinics.get(clinic)
            if config is None:
                raise Refused(409, "your clinic is not configured to publish events")
            stream = clinic_inbound_stream(clinic)
            keys = [k.get_secret_value() for k in config.keys]
            sign = signer(keys) if config.require_signature else None
        publisher = AsyncPublisher(
            self.redis, partitions=self.partitions, stream=stream, signer=sign
        )
        await publisher.publish(action)

    async def landed(self, client: str, who: Identity, event_id: str) -> int | None:
        """The audit entry (seq) of this event, once the gatekeeper has decided it."""
        _, timeline, _ = await self.timeline(client, who)
        return next((i.seq for i in timeline.items if i.event_id == event_id), None)


def physio_app(
    redis: RedisClient,
    settings: GatekeeperSettings,
    log: Log,
    protocols: Mapping[str, Protocol] | None = None,
) -> Starlette:
    web = PhysioWeb(redis, settings, log.bind(component="physio_http"), protocols or {})

    def handled(
        route: str, handler: Callable[[Request], Awaitable[Response]], as_html: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Refusals become status pages (or JSON), and each request one log line."""

        async def wrapped(request: Request) -> Response:
            asked = request.query_params.get("client")
            shown = asked if asked is None or CLIENT_ID.match(asked) else "(malformed)"
            ids = {"route": route, "client_id": shown}
            if as_html and request.method == "GET" and (proxied := web.proxied(request)):
                # Signed in by the single-sign-on proxy: a session of our own, then
                # the same page again (so actions get their CSRF token).
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return _signed_in(web, proxied.physio_id, web.sessions.issue(proxied), here)
            try:
                response = await handler(request)
            except Refused as refusal:
                web.log.info("physio_refused", status=refusal.status, reason=refusal.logged, **ids)
                if not as_html:
                    headers = dict(SECURITY_HEADERS)
                    if refusal.status == 401:
                        headers["WWW-Authenticate"] = 'Bearer realm="rehabgate physio"'
                    return JSONResponse({"error": refusal.message}, refusal.status, headers)
                if refusal.status == 401:
                    return web.page("login.html", 401)
                return web.page(
                    "message.html", refusal.status, title=views.TITLES.get(refusal.status, "Error"),
                    text=refusal.message,
                )  # fmt: skip
            web.log.info("physio_read", status=response.status_code, **ids)
            return response

        return wrapped

    async def overview_page(request: Request) -> Response:
        who = web.identity(request)
        overview = await web.overview(who.clinic_id)
        return web.page(
            "overview.html", overview=overview, who=who, query=request.query_params.get("q", "")
        )

    async def client_page(request: Request) -> Response:
        who = web.identity(request)
        audit, timeline, verdict = await web.timeline(request.query_params.get("client"), who)
        pending = request.query_params.get("action")
        landed = None
        if pending:
            landed = next((i for i in timeline.items if i.event_id == pending), None)
        protocol = web.protocols.get(audit.state.protocol) if audit.state else None
        headers = {"Refresh": "2"} if pending and landed is None else None
        return web.page(
            "client.html",
            headers=headers,
            timeline=timeline,
            verdict=verdict,
            who=who,
            state=audit.state,
            protocol=protocol,
            csrf=web.sessions.csrf(who.session) if who.session else None,
            pending=pending,
            landed=landed,
            every=request.query_params.get("every") == "1",
        )

    async def clients_json(request: Request) -> Response:
        who = web.identity(request)
        overview = await web.overview(who.clinic_id)
        data = overview.model_dump(mode="json")
        data["queue"] = [
            {"client_id": c.client_id, "reasons": [a.model_dump() for a in c.attention]}
            for c in overview.queue
        ]
        return JSONResponse(data, headers=SECURITY_HEADERS)

    async def history_json(request: Request) -> Response:
        who = web.identity(request)
        page = _positive(request, "page", 1, 1_000_000)
        per_page = _positive(request, "per_page", 50, MAX_PER_PAGE)
        _, timeline, verdict = await web.timeline(request.query_params.get("client"), who)
        return JSONResponse(
            history_page(timeline, verdict, page, per_page), headers=SECURITY_HEADERS
        )

    async def history_csv(request: Request) -> Response:
        who = web.identity(request)
        _, timeline, _ = await web.timeline(request.query_params.get("client"), who)
        name = f"rehabgate-history-{timeline.client_id}.csv"
        return Response(
            to_csv(timeline),
            200,
            {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
            media_type="text/csv; charset=utf-8",
        )

    async def login(request: Request) -> Response:
        proxied = web.proxy.physio(
            request.headers, request.client.host if request.client else None
        )
        if proxied is not None:
            return _signed_in(web, proxied.physio_id, web.sessions.issue(proxied), "/physio")
        if request.method != "POST":
            return web.page("login.html")
        form = await _form(request)
        physio_id, password = form.get("physio", "").strip(), form.get("password", "")
        physio = web.credentials.check(physio_id, password) if physio_id and password else None
        if physio is None:
            web.log.info(
                "physio_refused", status=401, reason="sign-in refused", route="/physio/login"
            )
            return web.page(
                "login.html", 401, error="That physio id and password do not match.",
                next=_safe_next(form.get("next")),
            )  # fmt: skip
        return _signed_in(
            web, physio.physio_id, web.sessions.issue(physio), _safe_next(form.get("next"))
        )

    async def logout(request: Request) -> Response:
        return RedirectResponse(
            "/physio/login", 303, {**SECURITY_HEADERS, "Set-Cookie": web.sessions.clear_cookie()}
        )

    async def act(request: Request) -> Response:
        form = await _form(request)
        session = web.sessions.identity(session_cookie(request.headers))
        if session is None or session.physio_id is None:
            raise Refused(401, "sign in first")
        if not web.sessions.csrf_ok(session.session, form.get("csrf")):
            raise Refused(
                403,
                "This form has expired or did not come from this site; reload the page and try again.",
                "csrf",
            )
        client = form.get("client")
        audit = await web.audit(client, session)
        kind = form.get("action", "")
        if kind not in ACTIONS:
            raise Refused(400, "choose approve, hold, regress or override")
        reason = " ".join(form.get("reason", "").split())
        if not reason:
            raise Refused(400, "a reason is required: it stays in the client's history")
        target = form.get("target_stage") or None if kind == "regress" else None
        try:
            action = ClinicianAction(
                event_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC),
                clinic_id=session.clinic_id,
                client_id=audit.client_id,
                action=kind,
                reason=reason,
                clinician_id=session.physio_id,
                target_stage=target,
            )
        except ValidationError as invalid:
            problem = invalid.errors()[0]
            field = ".".join(str(p) for p in problem["loc"])
            raise Refused(400, f"{field}: {problem['msg']}") from None
        await web.publish(audit, action)
        web.log.info(
            "physio_action", clinic_id=session.clinic_id, physio_id=session.physio_id,
            client_id=audit.client_id, action=kind, event_id=str(action.event_id),
        )  # fmt: skip
        event_id = str(action.event_id)
        deadline = asyncio.get_running_loop().time() + web.settings.physio_action_wait_s
        while await web.landed(audit.client_id, session, event_id) is None:
            if asyncio.get_running_loop().time() >= deadline:
                break  # the page shows it pending and refreshes until it lands
            await asyncio.sleep(0.2)
        query = urlencode({"client": audit.client_id, "action": event_id})
        return RedirectResponse(f"/physio/client?{query}#decision", 303, SECURITY_HEADERS)

    routes = [
        Route("/physio", handled("/physio", overview_page)),
        Route("/physio/", handled("/physio", overview_page)),
        Route("/physio/client", handled("/physio/client", client_page)),
        Route("/physio/action", handled("/physio/action", act), methods=["POST"]),
        Route("/physio/api/clients", handled("/physio/api/clients", clients_json, False)),
        Route("/physio/api/history", handled("/physio/api/history", history_json, False)),
        Route("/physio/api/history.csv", handled("/physio/api/history.csv", history_csv, False)),
        Route("/physio/login", login, methods=["GET", "POST"]),
        Route("/physio/logout", logout, methods=["GET", "POST"]),
        Mount("/physio/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.web = web
    return app


def _signed_in(web: PhysioWeb, physio_id: str, session: str, next_url: str) -> Response:
    web.log.info("physio_signed_in", physio_id=physio_id)
    return RedirectResponse(
        next_url, 303, {**SECURITY_HEADERS, "Set-Cookie": web.sessions.set_cookie(session)}
    )


def _safe_next(value: str | None) -> str:
    """Only a path of this app (never another site) after signing in."""
    if value and value.startswith("/physio") and "//" not in value and "\\" not in value:
        return value
    return "/physio"


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded form (the only kind the pages send), at most 16 KiB."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > 16_384:
            raise Refused(413, "the form is too large")
    parsed = parse_qs(body.decode(errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _positive(request: Request, name: str, default: int, most: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise Refused(400, f"{name} must be a whole number from 1 to {most}")
    return int(raw)

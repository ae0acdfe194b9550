"""Read access for physios, served by the gatekeeper (FastStream ASGI routes).

| path | what |
|---|---|
| `/physio` | clinic overview (HTML) |
| `/physio/client?client=ID` | one client's timeline (HTML) |
| `/physio/api/clients` | the overview as JSON |
| `/physio/api/history?client=ID&page=1&per_page=50` | the timeline as JSON, paginated |
| `/physio/api/history.csv?client=ID` | the timeline as CSV |
| `/physio/login`, `/physio/logout` | sign-in form (sets a cookie) and sign-out |

FastStream 0.7 routes match whole paths, so the client id travels as a query
parameter. No token: 401. A client of another clinic: 403. Reads are logged with
clinic and client ids and the status, never a token or a health value. HTML and
data responses are `no-store`: they carry health data.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from faststream.asgi import AsgiResponse, HttpHandler, Request, get
from faststream.asgi.types import ASGIApp

from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import GatekeeperSettings

from . import pages
from .access import COOKIE, ClinicAccess, presented_token
from .export import MAX_PER_PAGE, history_page, to_csv
from .history import Timeline, build_timeline
from .overview import ClinicOverview, client_row, clinic_overview
from .reading import ClientAudit, UnreadableClient, client_keys, read_client
from .verify import Verdict, verify_chain

CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HTML_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Type": "text/html; charset=utf-8",
    # No script at all, and nothing loaded from anywhere: the page is self-contained.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
Log = structlog.typing.FilteringBoundLogger
Handler = Callable[[Request], Coroutine[Any, Any, AsgiResponse]]


class Refused(Exception):
    """A request that ends with an error status (and a logged reason, no secrets)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def html(body: str, status: int = 200, extra: Mapping[str, str] | None = None) -> AsgiResponse:
    return AsgiResponse(body.encode(), status, {**HTML_HEADERS, **(extra or {})})


def json_response(data: Any, status: int = 200) -> AsgiResponse:
    headers = {**SECURITY_HEADERS, "Content-Type": "application/json"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="rehabgate physio"'
    return AsgiResponse(json.dumps(data).encode(), status, headers)


class PhysioReads:
    """The handlers' logic, apart from FastStream's route objects."""

    def __init__(self, redis: RedisClient, settings: GatekeeperSettings, log: Log) -> None:
        self.redis = redis
        self.partitions = settings.partitions
        self.access = ClinicAccess(settings.clinic_tokens)
        self.log = log

    def clinic(self, request: Request) -> str:
        clinic = self.access.clinic_for(presented_token(request.headers))
        if clinic is None:
            raise Refused(401, "a valid clinic token is needed")
        return clinic

    async def client(self, request: Request, clinic: str) -> ClientAudit:
        client = _param(request, "client")
        if client is None or not CLIENT_ID.match(client):
            raise Refused(400, "query parameter 'client' must be a client id")
        try:
            audit = await read_client(self.redis, ClientKeys.of(client, self.partitions))
        except UnreadableClient as unreadable:
            raise Refused(
                500, f"client {client}'s records cannot be read: {unreadable.reason}"
            ) from None
        if audit.state is None:
            raise Refused(404, f"no client {client} in clinic {clinic}")
        if audit.state.clinic_id != clinic:
            raise Refused(403, "this client belongs to another clinic")
        return audit

    async def timeline(self, request: Request, clinic: str) -> tuple[Timeline, Verdict]:
        audit = await self.client(request, clinic)
        return (
            build_timeline(audit.client_id, audit.entries),
            verify_chain(audit.entries, audit.head),
        )

    async def overview(self, clinic: str) -> ClinicOverview:
        rows = []
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
            rows.append(
                client_row(audit.state, timeline, verify_chain(audit.entries, audit.head).ok)
            )
            await asyncio.sleep(0)  # a large clinic must not starve the consumers
        return clinic_overview(clinic, rows)

    def logged(self, route: str, handler: Handler, as_html: bool) -> Handler:
        """Wrap a handler: refusals become status pages, and each read leaves one log line."""

        async def wrapped(request: Request) -> AsgiResponse:
            asked = _param(request, "client")
            # Only a well-formed (pseudonymous) id reaches the log, never arbitrary input.
            shown = asked if asked is None or CLIENT_ID.match(asked) else "(malformed)"
            ids = {"route": route, "client_id": shown}
            try:
                response = await handler(request)
            except Refused as refusal:
                self.log.info(
                    "physio_refused",
                    status=refusal.status,
                    reason=refusal.message.split(":")[0] if refusal.status != 404 else "not found",
                    **ids,
                )
                if not as_html:
                    return json_response({"error": refusal.message}, refusal.status)
                if refusal.status == 401:
                    return html(pages.login_page(), 401)
                return html(
                    pages.message_page(_TITLES[refusal.status], refusal.message), refusal.status
                )
            self.log.info("physio_read", status=response.status_code, **ids)
            return response

        return wrapped


_TITLES = {400: "Bad request", 403: "Not your clinic's client", 404: "Not found"}


def _param(request: Request, name: str) -> str | None:
    values = request.query_params.get(name)
    return values[0] if values else None


def _positive(request: Request, name: str, default: int, most: int) -> int:
    raw = _param(request, name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise Refused(400, f"{name} must be a whole number from 1 to {most}")
    return int(raw)


def physio_routes(
    redis: RedisClient, settings: GatekeeperSettings, log: Log
) -> list[tuple[str, ASGIApp]]:
    reads = PhysioReads(redis, settings, log.bind(component="physio_http"))

    async def overview_page(request: Request) -> AsgiResponse:
        clinic = reads.clinic(request)
        return html(pages.overview_page(await reads.overview(clinic)))

    async def timeline_page(request: Request) -> AsgiResponse:
        clinic = reads.clinic(request)
        timeline, verdict = await reads.timeline(request, clinic)
        return html(pages.timeline_page(timeline, verdict, clinic))

    async def clients_json(request: Request) -> AsgiResponse:
        clinic = reads.clinic(request)
        overview = await reads.overview(clinic)
        return json_response(overview.model_dump(mode="json"))

    async def history_json(request: Request) -> AsgiResponse:
        clinic = reads.clinic(request)
        page = _positive(request, "page", 1, 1_000_000)
        per_page = _positive(request, "per_page", 50, MAX_PER_PAGE)
        timeline, verdict = await reads.timeline(request, clinic)
        return json_response(history_page(timeline, verdict, page, per_page))

    async def history_csv(request: Request) -> AsgiResponse:
        clinic = reads.clinic(request)
        timeline, _ = await reads.timeline(request, clinic)
        name = f"rehabgate-history-{timeline.client_id}.csv"
        return AsgiResponse(
            to_csv(timeline).encode(),
            200,
            {
                **SECURITY_HEADERS,
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )

    async def login(request: Request) -> AsgiResponse:
        if request.method != "POST":
            return html(pages.login_page())
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        clinic = reads.access.clinic_for(token)
        if clinic is None:
            reads.log.info(
                "physio_refused",
                status=401,
                reason="sign-in with an unknown token",
                route="/physio/login",
            )
            return html(pages.login_page("That token is not valid for any clinic."), 401)
        reads.log.info("physio_signed_in", clinic_id=clinic)
        cookie = f"{COOKIE}={quote(token, safe='')}; Path=/physio; HttpOnly; SameSite=Lax; Max-Age=43200"
        return html("", 303, {"Location": "/physio", "Set-Cookie": cookie})

    async def logout(request: Request) -> AsgiResponse:
        cookie = f"{COOKIE}=; Path=/physio; HttpOnly; SameSite=Lax; Max-Age=0"
        return html("", 303, {"Location": "/physio/login", "Set-Cookie": cookie})

    def route(path: str, handler: Handler, as_html: bool = True) -> tuple[str, ASGIApp]:
        return path, get(reads.logged(path, handler, as_html), include_in_schema=False)

    return [
        route("/physio", overview_page),
        route("/physio/client", timeline_page),
        route("/physio/api/clients", clients_json, as_html=False),
        route("/physio/api/history", history_json, as_html=False),
        route("/physio/api/history.csv", history_csv, as_html=False),
        ("/physio/login", HttpHandler(login, methods=("GET", "POST"), include_in_schema=False)),
        route("/physio/logout", logout),
    ]

"""Issues 5 and 17: the physio workspace in a real headless browser (Debian's
chromium, driven by Playwright; Playwright never downloads a browser here), served
by a real gatekeeper that also decides what the page publishes, with a real
notifier delivering the client's message.

A physio signs in as themself, finds the flagged client at the top of the
needs-attention queue, approves them with a reason and sees the decision land as
**approved**; the client's message is delivered; a step back to a chosen stage
works; a form without its CSRF token, another clinic's client and an unknown
client are refused (the last two with the very same answer). Screenshots go to
test-artifacts/ for a person to look at.

Under CI=true a missing chromium fails these tests; elsewhere it skips them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.streams import client_messages_stream
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.redis_server import free_port
from rehabgate.services.gatekeeper.audit.reading import ClientAudit
from rehabgate.services.gatekeeper.physio_web.credentials import CredentialsFile
from tests.audit_histories import _event, stored_history
from tests.events import T0
from tests.physio_server import request
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@dataclass(frozen=True)
class Site:
    url: str
    clinic: str
    physio: str
    password: str
    other_physio: str
    other_password: str
    rich: ClientAudit  # clinic A: every kind of entry, ends on a physio's hold
    flagged: ClientAudit  # clinic A: new swelling, flagged
    stranger: ClientAudit  # clinic B


def flagged_history(client: str, clinic: str) -> list[dict[str, Any]]:
    """Enrolled, one easy session, then swelling the next morning: flagged."""
    return [
        _event(client, clinic, "client.enrolled", 0, protocol="achilles-tendinopathy@1",
               start_date=T0.date().isoformat()),
        _event(client, clinic, "session.logged", 10, session_id="s0", pain_during=2,
               completed=True),
        _event(client, clinic, "checkin.logged", 23, morning_pain=3, morning_stiffness=3,
               swelling=True),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def site(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    run = uuid.uuid4().hex[:6]
    clinic, other = f"riverside-{run}", f"hillside-{run}"
    rich = stored_history(redis_url, f"c-{run}", clinic)
    flagged_id = f"swelling-{run}"
    flagged = stored_history(redis_url, flagged_id, clinic, flagged_history(flagged_id, clinic))
    stranger = stored_history(redis_url, f"s-{run}", other)
    home = tmp_path_factory.mktemp("physio-site")
    credentials = CredentialsFile(home / "physios.json")
    physio, other_physio = f"anna-{run}", f"ben-{run}"
    password = credentials.issue(physio, clinic)
    other_password = credentials.issue(other_physio, other)
    assert password
    assert other_password
    port = free_port()
    env = {
        "REHABGATE_HTTP_PORT": str(port),
        "REHABGATE_NOTIFIER_HTTP_PORT": str(free_port()),
        "REHABGATE_INGEST_HTTP_PORT": str(free_port()),
        "REHABGATE_PHYSIO_CREDENTIALS": str(credentials.path),
        "REHABGATE_PHYSIO_SESSION_SECRET": uuid.uuid4().hex,
        "REHABGATE_LOG_JSON": "true",
        # A physio's action happens now: send its message at once, not after the
        # window in which further decisions of the client would join it.
        "REHABGATE_COALESCE_WINDOW_S": "0",
    }
    service_env = {s: env for s in ("gatekeeper", "notifier", "ingest")}
    with Stack(redis_url, data_dir=None, log_dir=home / "logs", service_env=service_env):
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: _ready(url),
            what="the gatekeeper serving its pages",
        )
        yield Site(url, clinic, physio, password, other_physio, other_password,
                   rich, flagged, stranger)  # fmt: skip


def _ready(url: str) -> bool:
    try:
        return request(f"{url}/health/ready").status == 200
    except OSError:
        return False


@pytest.fixture
def page(site: Site, browser: Any) -> Iterator[Any]:
    """A fresh browser context; every request it makes and every console error kept.
    (`site` first: its histories are built with asyncio.run, which cannot run once
    Playwright's sync API holds this thread's event loop.)"""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)  # a busy machine; Playwright's default is 30 s
    opened = context.new_page()
    opened.requests, opened.errors = [], []
    opened.on("request", lambda r: opened.requests.append(r.url))
    opened.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    yield opened
    context.close()


def sign_in(page: Any, site: Site, physio: str, password: str) -> None:
    page.goto(f"{site.url}/physio")
    page.fill("#physio", physio)
    page.fill("#password", password)
    page.click("form.login button")
    page.wait_for_url(f"{site.url}/physio")
    page.errors.clear()  # the sign-in form itself came with a 401, as it should


def act(page: Any, action: str, reason: str, target: str | None = None) -> None:
    page.select_option("#action", action)
    if target is not None:
        page.select_option("#target_stage", target)
    page.fill("#reason", reason)
    page.click("#act button")
    page.wait_for_selector("#decision.landed", timeout=90_000)


def test_a_physio_approves_the_flagged_client_from_the_top_of_the_queue(
    page: Any, site: Site, sync_redis: redis.Redis
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    sign_in(page, site, site.physio, site.password)
    assert page.locator("h1").inner_text() == f"Clinic {site.clinic}"
    assert f"signed in as {site.physio}" in page.locator("header").inner_text()
    assert page.locator(f"text={site.stranger.client_id}").count() == 0
    first = page.locator("ol.queue > li").first
    assert first.locator("a.client").inner_text() == site.flagged.client_id
    assert first.locator(".q").inner_text() == "flagged"
    assert "swelling" in first.locator(".why").inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "physio-overview.png"), full_page=True)

    first.locator("a.client").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == f"Client {site.flagged.client_id}"
    needed = page.locator("section.next").inner_text()
    assert "What is still needed for the next stage" in needed
    assert "[" not in needed
    act(page, "approve", "Swelling reviewed in clinic: minor, resume loading")
    landed = page.locator("#decision").inner_text()
    assert "approval is recorded" in landed
    assert page.locator("#decision .badge").inner_text() == "approved"
    approval = page.locator("ol.decisions > li.clinician").last
    assert approval.locator(".badge").first.inner_text() == "approved"
    assert site.physio in approval.inner_text()

    def delivered() -> dict[str, Any] | None:
        for _, fields in sync_redis.xrange(client_messages_stream(0)):
            message = json.loads(fields[b"message"])
            if message["client_id"] == site.flagged.client_id and "reviewed" in message["title"]:
                return message  # type: ignore[no-any-return]
        return None

    message = wait_for(delivered, what="the client's message after the approval")
    assert "Your physio reviewed your progress: you can resume loading" in message["body"]
    csv = page.request.get(f"{site.url}/physio/api/history.csv?client={site.flagged.client_id}")
    assert ",approved," in csv.text()
    assert all(url.startswith(site.url) for url in page.requests), page.requests
    assert page.errors == []


def test_a_step_back_to_a_chosen_stage(page: Any, site: Site) -> None:
    sign_in(page, site, site.physio, site.password)
    page.goto(f"{site.url}/physio/client?client={site.rich.client_id}")
    decisions = page.locator("ol.decisions > li")
    assert 0 < decisions.count() < site.rich.head.version  # changes, flags, actions first
    page.screenshot(path=str(ARTIFACTS / "physio-client.png"), full_page=True)
    page.click("#show-every")
    page.wait_for_load_state()
    assert page.locator("ol.decisions > li").count() == site.rich.head.version

    act(page, "regress", "Pain flare after travelling: back to basics", target="start-loading")
    assert page.locator("#decision .badge").inner_text() == "regressed"
    assert "start loading" in page.locator("#decision").inner_text().lower()
    assert "start loading" in page.locator(".facts").first.inner_text().lower()  # current stage

    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844})
    try:
        small = phone.new_page()
        small.context.add_cookies(page.context.cookies())
        small.goto(f"{site.url}/physio/client?client={site.rich.client_id}")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, width  # nothing wider than the phone
        small.screenshot(path=str(ARTIFACTS / "physio-client-390.png"), full_page=True)
    finally:
        phone.close()


def test_missing_csrf_other_clinic_and_unknown_client_are_refused(page: Any, site: Site) -> None:
    sign_in(page, site, site.physio, site.password)
    page.goto(f"{site.url}/physio/client?client={site.rich.client_id}")
    csrf = page.locator("input[name=csrf]").get_attribute("value")
    form = {"client": site.rich.client_id, "action": "hold", "reason": "no token"}
    without = page.request.post(f"{site.url}/physio/action", form=form)
    assert without.status == 403
    assert "did not come from this site" in without.text()

    unknown = page.request.get(f"{site.url}/physio/client?client=nobody-{uuid.uuid4().hex[:6]}")
    other = page.request.get(f"{site.url}/physio/client?client={site.stranger.client_id}")
    assert unknown.status == other.status == 404
    assert unknown.text() == other.text()
    for client in (site.stranger.client_id, "nobody-here"):
        acted = page.request.post(
            f"{site.url}/physio/action", form={**form, "client": client, "csrf": csrf}
        )
        assert acted.status == 404
        assert acted.text() == unknown.text()

    response = page.goto(f"{site.url}/physio/client?client={site.stranger.client_id}")
    assert response.status == 404
    assert page.locator(".chart").count() == 0

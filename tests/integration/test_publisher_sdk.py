"""Issue 8: the publisher SDK and the Node example publish events the gatekeeper
accepts, and `wait_for_decision` hands back each event's decision or dead letter.

The gatekeeper is the real use case (`process_batch` + `RedisClientStore`) run on
the very entries the publishers wrote, or the running services (`Stack`). The
Node test installs the `redis` npm package into build/node once; under CI=true a
missing node/npm, or a failed install, fails it instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import redis
import redis.asyncio as aredis
from pydantic import ValidationError

from rehabgate.schemas.inbound import parse_inbound
from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.publisher import (
    AsyncPublisher,
    DeadLetterInfo,
    DecisionTimeout,
    Events,
    Publisher,
    exercise,
)
from rehabgate.schemas.signing import decode_key, generate_key, signer
from rehabgate.schemas.streams import INBOUND, clinic_inbound_stream
from rehabgate.services.cli.health import check
from rehabgate.services.cli.stack import Stack
from rehabgate.services.gatekeeper.process import Entry, Report, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import RedisClientStore
from rehabgate.services.gatekeeper.tenancy import SHARED, Source
from tests.events import T0, unique_client
from tests.waiting import died, wait_for, wait_for_async

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "build" / "node"
NODE_SCRIPT = ROOT / "tests" / "node" / "publish.mjs"
PROTOCOLS = load_protocols()


def clinic(start: datetime = T0) -> Events:
    """Builders on a fixed clock one hour apart per event, so histories are ordered."""
    ticks = iter(range(10_000))
    return Events("clinic-a", clock=lambda: start + timedelta(hours=next(ticks)))


async def gatekeep(r: aredis.Redis, entry_ids: list[str], source: Source = SHARED) -> Report:
    """Run the gatekeeper's use case on exactly these inbound entries of `source`."""
    entries = []
    for entry_id in entry_ids:
        [(_, fields)] = await r.xrange(source.stream, min=entry_id, max=entry_id)
        entries.append(Entry(entry_id, fields))
    return await process_batch(entries, RedisClientStore(r, partitions=1), PROTOCOLS, source)


def gatekeep_sync(redis_url: str, entry_ids: list[str], source: Source = SHARED) -> Report:
    async def run() -> Report:
        r = aredis.Redis.from_url(redis_url)
        try:
            return await gatekeep(r, entry_ids, source)
        finally:
            await r.aclose()

    return asyncio.run(run())


def test_every_builder_makes_a_valid_event_with_a_fresh_id_and_an_offset() -> None:
    events = Events("clinic-a")
    client = unique_client()
    built = [
        events.client_enrolled(client, "achilles-tendinopathy@1"),
        events.session_logged(
            client, "s-1", pain_during=3, completed=True, pain_after=2,
            exercises=[exercise("one-leg-heel-raise", 10, 10, 8)],
            metrics={"single_leg_heel_raise_reps": 9}, observations={"limp": False},
        ),
        events.checkin_logged(client, morning_pain=2, morning_stiffness=1, swelling=False),
        events.clinician_action(client, "approve", reason="Reviewed today", clinician_id="physio-7"),
        events.client_contact_updated(client, "stream", "app-inbox", locale="de"),
        events.client_discharged(client, reason="Goals met"),
    ]  # fmt: skip

    assert len({e.event_id for e in built}) == len(built)
    for event in built:
        assert event.occurred_at.utcoffset() is not None
        assert parse_inbound(event.model_dump_json()) == event
    assert built[0].start_date == date.today()
    assert [s.reps for s in built[1].exercises[0].sets] == [10, 10, 8]


def test_builders_refuse_what_the_gatekeeper_would_refuse() -> None:
    events = Events("clinic-a")
    with pytest.raises(ValidationError, match="client_id"):
        events.checkin_logged("jane.doe@example.com", morning_pain=1, morning_stiffness=1,
                              swelling=False)  # fmt: skip
    with pytest.raises(ValidationError, match="pain_during"):
        events.session_logged("c-1", "s-1", pain_during=11, completed=True)
    with pytest.raises(ValidationError, match="occurred_at"):
        events.client_discharged("c-1", occurred_at=datetime(2026, 11, 2, 8))  # naive


def test_publish_is_a_plain_xadd_of_the_json_in_field_event(sync_redis: redis.Redis) -> None:
    event = clinic().client_enrolled(unique_client(), "achilles-tendinopathy@1")
    with Publisher(sync_redis) as publisher:
        entry_id = publisher.publish(event)

    [(found_id, fields)] = sync_redis.xrange(INBOUND, min=entry_id, max=entry_id)
    assert found_id.decode() == entry_id
    assert set(fields) == {b"event"}
    assert parse_inbound(fields[b"event"]) == event


def test_publish_carries_the_callers_traceparent_beside_the_event(
    sync_redis: redis.Redis,
) -> None:
    event = clinic().client_enrolled(unique_client(), "achilles-tendinopathy@1")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with Publisher(sync_redis) as publisher:
        entry_id = publisher.publish(event, traceparent=traceparent)

    [(_, fields)] = sync_redis.xrange(INBOUND, min=entry_id, max=entry_id)
    assert fields == {b"event": event.model_dump_json(exclude_none=True).encode(),
                      b"traceparent": traceparent.encode()}  # fmt: skip


def test_gatekeeper_accepts_sdk_events_and_wait_returns_each_decision(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    events, client = clinic(), unique_client()
    enrolment = events.client_enrolled(client, "achilles-tendinopathy@1", T0.date())
    session = events.session_logged(
        client, "s-0001", pain_during=3, completed=True,
        exercises=[exercise("one-leg-heel-raise", 10, 10, 10)],
    )  # fmt: skip
    with Publisher(redis_url) as publisher:
        sent = [publisher.publish(enrolment), publisher.publish(session)]
        report = gatekeep_sync(redis_url, sent)
        decided = publisher.wait_for_decision(session, timeout=60)
        enrolled = publisher.wait_for_decision(enrolment.event_id, timeout=60)

    assert [report.fates[e] for e in sent] == ["applied", "applied"]
    assert isinstance(decided, ProgressionEvaluated)
    assert decided.cause_event_id == session.event_id
    assert decided.outcome == "held"
    assert isinstance(enrolled, ProgressionEvaluated)
    assert (enrolled.outcome, enrolled.to_stage) == ("unlocked", "start-loading")


def test_a_refused_event_comes_back_as_its_dead_letter(redis_url: str) -> None:
    stranger = clinic().checkin_logged(
        unique_client(), morning_pain=1, morning_stiffness=1, swelling=False
    )
    with Publisher(redis_url) as publisher:
        entry_id = publisher.publish(stranger)
        gatekeep_sync(redis_url, [entry_id])
        fate = publisher.wait_for_decision(str(stranger.event_id), timeout=60)

    assert isinstance(fate, DeadLetterInfo)
    assert fate.reason.startswith("unknown client")
    assert fate.source_id == entry_id
    assert parse_inbound(fate.raw) == stranger


def test_another_process_finds_a_fate_from_the_entry_id(redis_url: str) -> None:
    events, client = clinic(), unique_client()
    enrolment = events.client_enrolled(client, "achilles-tendinopathy@1", T0.date())
    with Publisher(redis_url) as publisher:
        entry_id = publisher.publish(enrolment)
    gatekeep_sync(redis_url, [entry_id])

    with Publisher(redis_url) as elsewhere:
        fate = elsewhere.wait_for_decision(enrolment.event_id, timeout=60, after=entry_id)
    assert isinstance(fate, ProgressionEvaluated)
    assert fate.cause_event_id == enrolment.event_id


def test_wait_times_out_with_a_clear_error(redis_url: str) -> None:
    event = clinic().client_discharged(unique_client())
    with Publisher(redis_url) as publisher:
        publisher.publish(event)  # nobody gatekeeps it
        with pytest.raises(DecisionTimeout, match=str(event.event_id)):
            publisher.wait_for_decision(event, timeout=0.3)


def test_signer_fields_travel_with_the_event(redis_url: str, sync_redis: redis.Redis) -> None:
    """Issue 7's hook: the signer sees the exact payload and adds entry fields."""
    seen: list[tuple[str, bytes]] = []

    def signer(stream: str, payload: bytes) -> dict[str, str]:
        seen.append((stream, payload))
        return {"sig": "v1=test", "key_id": "k1"}

    event = clinic().client_enrolled(unique_client(), "achilles-tendinopathy@1", T0.date())
    with Publisher(redis_url, signer=signer) as publisher:
        entry_id = publisher.publish(event)
    [(_, fields)] = sync_redis.xrange(INBOUND, min=entry_id, max=entry_id)

    assert seen == [(INBOUND, fields[b"event"])]
    assert (fields[b"sig"], fields[b"key_id"]) == (b"v1=test", b"k1")
    assert gatekeep_sync(redis_url, [entry_id]).fates[entry_id] == "applied"


def test_signed_events_on_a_clinic_stream_are_accepted_or_come_back_refused(
    redis_url: str,
) -> None:
    """Issue 7 through the SDK: the clinic's own stream and `signing.signer(key)`."""
    clinic_id, key = f"clinic-{uuid4().hex[:6]}", generate_key()
    source = Source(clinic_inbound_stream(clinic_id), clinic_id, True, (decode_key(key),))
    events, client = Events(clinic_id, clock=clinic().clock), unique_client()
    enrolment = events.client_enrolled(client, "achilles-tendinopathy@1", T0.date())
    forged = events.checkin_logged(client, morning_pain=1, morning_stiffness=1, swelling=False)

    with (
        Publisher(redis_url, stream=source.stream, signer=signer(key)) as publisher,
        Publisher(redis_url, stream=source.stream, signer=signer(generate_key())) as impostor,
    ):
        sent = [publisher.publish(enrolment), impostor.publish(forged)]
        report = gatekeep_sync(redis_url, sent, source)
        accepted = publisher.wait_for_decision(enrolment, timeout=60)
        refused = impostor.wait_for_decision(forged, timeout=60)

    assert [report.fates[e] for e in sent] == ["applied", "dead_lettered"]
    assert isinstance(accepted, ProgressionEvaluated)
    assert accepted.outcome == "unlocked"
    assert isinstance(refused, DeadLetterInfo)
    assert refused.reason.startswith("signature invalid")
    assert (refused.source_stream, refused.source_id) == (source.stream, sent[1])


async def test_async_wait_blocks_until_the_gatekeeper_decides(
    async_redis: aredis.Redis, redis_url: str
) -> None:
    events, client = clinic(), unique_client()
    enrolment = events.client_enrolled(client, "achilles-tendinopathy@1", T0.date())
    checkin = events.checkin_logged(client, morning_pain=7, morning_stiffness=5, swelling=False)
    name = f"sdk-wait-{uuid4().hex[:8]}"
    own = aredis.Redis.from_url(redis_url, client_name=name)

    async def blocked_in_xread() -> bool:
        """The publisher's connection waits in XREAD on the server: it is waiting."""
        return any(c["name"] == name and c["cmd"] == "xread" and "b" in c["flags"]
                   for c in await async_redis.client_list())  # fmt: skip

    async with AsyncPublisher(own) as publisher:
        sent = [await publisher.publish(enrolment), await publisher.publish(checkin)]
        waiting = asyncio.create_task(publisher.wait_for_decision(checkin, timeout=120))
        await wait_for_async(blocked_in_xread, what="the publisher's XREAD to block")
        assert not waiting.done()
        await gatekeep(async_redis, sent)
        fate = await waiting
        fates = [f async for f in publisher.fates(sent, timeout=60)]
    await own.aclose()

    assert isinstance(fate, ProgressionEvaluated)
    assert (fate.cause_event_id, fate.outcome) == (checkin.event_id, "flagged")
    assert [entry for entry, _ in fates] == sent


def readme_block(language: str, marker: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", readme, flags=re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README should have one {language} block with {marker!r}"
    return found[0]


@pytest.mark.slow
def test_readme_python_example_against_the_running_services(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = readme_block("python", "from rehabgate.schemas.publisher import")
    code = code.replace("c-7f3a9", unique_client("readme"))
    # The example's wait is for a running gatekeeper's decision; on a busy machine
    # the services' start-up alone can take longer, hence the health wait and a
    # longer wait in the copy run here.
    assert "timeout=10)" in code
    code = code.replace("timeout=10)", "timeout=120)")
    monkeypatch.setenv("REDIS_URL", redis_url)
    out = io.StringIO()
    with Stack(redis_url, data_dir=None, log_dir=tmp_path / "logs") as stack:
        for service in ("gatekeeper", "notifier"):
            consumer = f"{socket.gethostname()}-{stack.processes[service].pid}"
            wait_for(lambda s=service, c=consumer: check(redis_url, s, c)[0],
                     what=f"the {service} healthy", abort=died(stack))  # fmt: skip
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example

    assert re.search(r"^held start-loading ", out.getvalue(), flags=re.MULTILINE), out.getvalue()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_with_redis() -> list[str]:
    """`node` with the `redis` npm package installed under build/node (cached there)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the Node example test (Node >= 18)")
    assert node is not None
    assert npm is not None
    if not (NODE_DIR / "node_modules" / "redis" / "package.json").is_file():
        install = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "redis@4"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if install.returncode != 0:
            _unavailable(f"npm install redis@4 failed:\n{install.stderr[-3000:]}")
    return [node]


def test_node_example_publishes_events_the_gatekeeper_accepts(
    node_with_redis: list[str], redis_url: str
) -> None:
    # Run a copy beside build/node/node_modules, where Node resolves `import 'redis'`.
    script = NODE_DIR / NODE_SCRIPT.name
    shutil.copyfile(NODE_SCRIPT, script)
    client = unique_client("node")
    run = subprocess.run(
        [*node_with_redis, str(script)], env={**os.environ, "REDIS_URL": redis_url, "CLIENT_ID": client},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    published = [json.loads(line) for line in run.stdout.splitlines()]
    entry_ids = [p["entry_id"] for p in published]

    report = gatekeep_sync(redis_url, entry_ids)

    assert [report.fates[e] for e in entry_ids] == ["applied", "applied"], report.dead_letters
    assert [report.outcomes[e] for e in entry_ids] == ["unlocked", "held"]
    assert [e.client_id for e in report.events.values()] == [client, client]
    with Publisher(redis_url) as publisher:
        fate = publisher.wait_for_decision(published[1]["event_id"], 60, after=entry_ids[0])
    assert isinstance(fate, ProgressionEvaluated)
    assert fate.cause_event_id == UUID(published[1]["event_id"])
    assert fate.occurred_at.tzinfo is not None
    assert fate.occurred_at <= datetime.now(UTC)


def test_readme_node_example_is_the_tested_script() -> None:
    assert readme_block("js", "createClient").strip() == NODE_SCRIPT.read_text().strip()

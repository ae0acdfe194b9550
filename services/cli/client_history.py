"""`rehabgate replay CLIENT --protocol ID@VERSION`: re-evaluate a stored client's
history under another protocol version and show what would have differed."""

from __future__ import annotations

from typing import cast

from rehabgate.services.common.connections import sync_client
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.domain.history import UnreadableState, decode_state
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import events_in_audit

from .errors import CliError
from .protocol_tools import differences, simulate


def replay_stored(url: str, settings: Settings, client_id: str, other_ref: str) -> int:
    protocols = load_protocols(settings.protocol_dirs)
    keys = ClientKeys.of(client_id, settings.partitions)
    client = sync_client(url, settings.redis_cluster)
    raw = cast(bytes | None, client.hget(keys.state, "state"))
    audit = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(keys.audit))
    client.close()
    if raw is None:
        raise CliError(f"rehabgate replay: no client {client_id}")
    try:
        state = decode_state(raw)
    except UnreadableState:
        raise CliError(
            f"rehabgate replay: the stored state of {client_id} cannot be read"
        ) from None
    if other_ref not in protocols or state.protocol not in protocols:
        missing = other_ref if other_ref not in protocols else state.protocol
        raise CliError(
            f"rehabgate replay: unknown protocol {missing}; known: {', '.join(sorted(protocols))}"
        )
    log = events_in_audit(fields for _, fields in audit)
    current = simulate(protocols[state.protocol], state.enrolment, log)
    other = simulate(protocols[other_ref], state.enrolment, log)
    changed = differences(current, other)
    print(f"{client_id}: {len(current)} decisions under {state.protocol}, "
          f"{len(other)} under {other_ref}; {len(changed)} differ")  # fmt: skip
    for line in changed:
        print(f"  {line}")
    final = other[-1] if other else None
    if final is not None:
        print(f"under {other_ref} the client would now be at {final.to_stage} ({final.outcome})")
    return 0

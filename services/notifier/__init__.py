"""The notifier: decisions become plain-language client messages, each sent once.

Where things are:
- `messages.py` + `rendering.py` + `templates/<locale>/`: what a message says
  (Jinja2, per outcome and locale, per-clinic overrides);
- `contacts.py`: the client's channel, address, locale and quiet hours;
- `coalescing.py` + `quiet_hours.py`: which message a decision joins, and when
  that message is due (pure, time as a parameter);
- `outbox/`: messages between decision and sending, in Redis;
- `channels/`: the client-messages stream, e-mail (SMTP) and signed webhooks,
  with bounded retries;
- `process.py` (a batch of decisions), `sending.py` (due messages),
  `loop.py` (held messages), `app.py` (FastStream wiring).

Delivery guarantees, per channel:

- **Every decision is taken once.** Its first handling writes its id into the
  partition's delivery ledger in the same atomic step that puts it into a
  message in the outbox (and alerts the physios of a flag). A redelivered or
  reprocessed decision finds the ledger entry and changes nothing, so a
  decision never produces two messages.
- **Client-messages stream (default): exactly once.** The message, its
  receipts and its removal from the outbox are one atomic Redis step; a crash
  before it leaves the message in the outbox, a crash after it leaves nothing
  to do.
- **E-mail and webhooks (outside Redis): exactly once where the receiver honours
  the idempotency key, else at most one duplicate per crash.** A message is
  first claimed in the outbox as "sending" (with a lease longer than the whole
  retry budget), then sent, then recorded as delivered (or failed) with its
  receipts. A notifier that crashes between the send and the record leaves the
  claim to lapse; the next sender re-sends with the SAME idempotency key: the
  `webhook-id` header for webhooks, the `Message-ID` header for e-mail, both
  the message id (= its first decision's id). A webhook receiver that
  de-duplicates on `webhook-id` (as Standard Webhooks asks) sees one message;
  plain SMTP has no idempotency, so the client may get one duplicate e-mail per
  notifier crash in that window (mail clients that thread on Message-ID show it
  as the same message).
- Transient failures (timeouts, HTTP 5xx/429, SMTP 4xx) are retried with
  exponential backoff and jitter, bounded in tries and time; permanent ones
  (HTTP 4xx, SMTP 5xx, an unconfigured channel) and exhausted retries end in a
  `message.failed` receipt. Successes give `message.delivered`. One receipt per
  decision, naming the message that covered it.

Contact addresses are read per batch, used only by the channels and never
logged (they are `SecretStr` in memory).
"""

// Publish a client's enrolment and first session, over Redis with Node's plain `redis`
// package (v4), or over HTTPS to `rehabgate ingest` with the built-in fetch (no packages).
// REDIS_URL=redis://127.0.0.1:6379 CLIENT_ID=c-7f3a9 node publish.mjs
// INGEST_URL=https://ingest.example.org API_KEY=rgk_... CLIENT_ID=c-7f3a9 node publish.mjs
import { randomUUID } from 'node:crypto';

const clientId = process.env.CLIENT_ID ?? 'c-7f3a9'; // pseudonymous: never a name or e-mail
const envelope = () => ({
  event_id: randomUUID(), // the idempotency key: keep it, and re-sending is safe
  schema_version: 1,
  occurred_at: new Date().toISOString(), // RFC 3339 with an offset ("Z" is UTC)
  clinic_id: 'clinic-a',
  client_id: clientId,
});
const events = [
  {
    ...envelope(),
    event_type: 'client.enrolled',
    protocol: 'achilles-tendinopathy@1',
    start_date: new Date().toISOString().slice(0, 10),
  },
  {
    ...envelope(),
    event_type: 'session.logged',
    session_id: 's-0001',
    pain_during: 3,
    completed: true,
    exercises: [{ exercise_id: 'one-leg-heel-raise', sets: [{ reps: 10 }, { reps: 10 }, { reps: 10 }] }],
  },
];

if (process.env.INGEST_URL) {
  // HTTPS: one request for both (all or nothing); 202 gives each event's entry id.
  const headers = { Authorization: `Bearer ${process.env.API_KEY}`, 'Content-Type': 'application/json' };
  const answer = await fetch(`${process.env.INGEST_URL}/v1/events`, {
    method: 'POST', headers, body: JSON.stringify(events),
  });
  const body = await answer.json();
  if (answer.status !== 202) throw new Error(`${answer.status}: ${JSON.stringify(body)}`);
  for (const { entry_id, event_id } of body.accepted) console.log(JSON.stringify({ entry_id, event_id }));
  // Its fate later: GET /v1/events/<event_id> -> {"fate": "applied", "decision": {...}}
} else {
  const { createClient } = await import('redis');
  const redis = createClient({ url: process.env.REDIS_URL });
  await redis.connect();
  for (const event of events) {
    const entryId = await redis.xAdd('rehabgate:inbound', '*', { event: JSON.stringify(event) });
    console.log(JSON.stringify({ entry_id: entryId, event_id: event.event_id }));
  }
  await redis.quit();
}

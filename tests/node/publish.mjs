// Publish a client's enrolment and first session with Node's plain `redis` package (v4).
// REDIS_URL=redis://127.0.0.1:6379 CLIENT_ID=c-7f3a9 node publish.mjs
import { randomUUID } from 'node:crypto';
import { createClient } from 'redis';

const redis = createClient({ url: process.env.REDIS_URL });
await redis.connect();

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
for (const event of events) {
  const entryId = await redis.xAdd('rehabgate:inbound', '*', { event: JSON.stringify(event) });
  console.log(JSON.stringify({ entry_id: entryId, event_id: event.event_id }));
}
await redis.quit();

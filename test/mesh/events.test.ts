import 'reflect-metadata';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_BATCH_BYTES, MAX_BATCH_EVENTS, toWireEvent, wireEventBytes, type WireEvent } from '../../src/mesh/events/index.js';
import { BatchRejectedError, EventQueue } from '../../src/mesh/proxy/event-queue.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { errorOf, identityClient, newWorkload, type IdentityCall, type IdResult, type Workload } from '../identity/identity-client.js';

// Proxy security events end to end: the mesh/events route over real HTTPS, authenticated by a real X.509-SVID
// (mutual TLS), and the proxy-side queue that must never hold traffic up.

let s: InProcessServer;
let call: IdentityCall;
let proxy: Workload;

before(async () => {
  s = await startTestServer({ tls: true });
  call = identityClient(s.address, s.caFile!, s.rootToken);
  proxy = await newWorkload(call, 'web', 'shop');
});

/** POST mesh/events as the proxy, authenticated by its SVID alone (no token). */
function report(body: unknown, who: Workload = proxy): Promise<IdResult> {
  return call('POST', 'mesh/events', { token: null, cert: who.certPem, key: who.keyPem, body });
}

function ev(over: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'refused', reason: 'unknown_ca', direction: 'inbound', peer: '10.1.2.3:40000', spiffe_id: 'spiffe://aegis.local/ns/shop/svc/web', detail: 'chain verification failed: UNABLE_TO_GET_ISSUER_CERT_LOCALLY', ...over };
}

async function total(): Promise<number> {
  return (await s.core.events.recent(100_000)).filter((e) => e.type.startsWith('mesh_')).length;
}

describe('mesh/events: recording what proxies saw', () => {
  it('records a batch as security events, in order, subject = the reporting proxy’s SPIFFE ID', async () => {
    const batch = [
      ev({ detail: 'first' }),
      ev({ type: 'denied', reason: 'denied', spiffe_id: 'spiffe://aegis.local/ns/shop/svc/cart', detail: 'connect is not allowed by policy' }),
      ev({ type: 'closed', reason: 'revoked', direction: 'outbound', peer: '[::1]:8443', detail: 'serial 0a is revoked' }),
      { type: 'refused', reason: 'no_certificate', direction: 'inbound', peer: '::ffff:127.0.0.1:5000' },
    ];
    const r = await report({ events: batch });
    assert.equal(r.status, 200, errorOf(r));
    assert.deepEqual(r.body.data, { accepted: 4 });

    const got = (await s.core.events.recent(4)).reverse();
    assert.deepEqual(got.map((e) => e.type), ['mesh_refused', 'mesh_denied', 'mesh_closed', 'mesh_refused']);
    for (const e of got) {
      assert.equal(e.subject, proxy.spiffeId);
      assert.equal(e.outcome, 'failure');
      assert.match(e.client_ip ?? '', /127\.0\.0\.1/);
    }
    assert.deepEqual(got[1]!.details, { reason: 'denied', direction: 'inbound', peer: '10.1.2.3:40000', peer_spiffe_id: 'spiffe://aegis.local/ns/shop/svc/cart' });
    assert.equal(got[1]!.reason, 'connect is not allowed by policy');
    assert.deepEqual(got[2]!.details, { reason: 'revoked', direction: 'outbound', peer: '[::1]:8443', peer_spiffe_id: 'spiffe://aegis.local/ns/shop/svc/web' });
    assert.deepEqual(got[3]!.details, { reason: 'no_certificate', direction: 'inbound', peer: '::ffff:127.0.0.1:5000' });
    assert.equal(got[3]!.reason, undefined);
    assert.deepEqual((await s.core.events.recent(1, 'mesh_closed'))[0]!.details?.peer, '[::1]:8443');
  });

  it('a proxy cannot report in another’s name: the body’s claims never become the subject', async () => {
    const victim = 'spiffe://aegis.local/ns/shop/svc/payments';
    const r = await report({ events: [ev({ spiffe_id: victim })], subject: victim, reporter: victim });
    assert.equal(r.status, 200, errorOf(r));
    assert.match(String(r.body.warnings), /ignored unknown parameters: reporter, subject/);
    const [got] = await s.core.events.recent(1);
    assert.equal(got!.subject, proxy.spiffeId);
    // The peer's claimed ID is kept as what it is: a detail about the peer.
    assert.equal(got!.details?.peer_spiffe_id, victim);
    // Inside an event, a subject field is not part of the format at all.
    const inner = await report({ events: [ev({ subject: victim })] });
    assert.equal(inner.status, 400);
    assert.match(errorOf(inner), /events\[0\]\.subject: unknown field/);
  });

  it('a workload token from attestation reports as that workload too', async () => {
    const other = await newWorkload(call, 'api', 'shop');
    const r = await call('POST', 'mesh/events', { token: other.token, body: { events: [ev()] } });
    assert.equal(r.status, 200, errorOf(r));
    assert.equal((await s.core.events.recent(1))[0]!.subject, other.spiffeId);
  });

  const bad: [string, unknown, RegExp][] = [
    ['a type outside the set', ev({ type: 'exploded' }), /events\[1\]\.type: expected one of refused, denied, closed/],
    ['a reason outside the fixed set', ev({ reason: 'bad_vibes'}), /events\[1\]\.reason: expected one of no_certificate, unknown_ca/],
    ['a denial with a verification reason', ev({ type: 'denied', reason: 'expired' }), /events\[1\]\.reason: a denied event has reason "denied"/],
    ['a refusal with reason denied', ev({ type: 'refused', reason: 'denied' }), /events\[1\]\.reason: a refused event has a verification reason/],
    ['a direction outside the set', ev({ direction: 'sideways'}), /events\[1\]\.direction: expected inbound or outbound/],
    ['a peer that is a host name', ev({ peer: 'evil.example:443' }), /events\[1\]\.peer: expected ip:port/],
    ['a peer without a port', ev({ peer: '10.0.0.1' }), /events\[1\]\.peer/],
    ['a peer with port 0', ev({ peer: '10.0.0.1:0' }), /events\[1\]\.peer/],
    ['a peer with port 70000', ev({ peer: '10.0.0.1:70000' }), /events\[1\]\.peer/],
    ['a missing peer', { type: 'refused', reason: 'protocol', direction: 'inbound' }, /events\[1\]\.peer/],
    ['a spiffe_id with a space', ev({ spiffe_id: 'spiffe://aegis.local/a b' }), /events\[1\]\.spiffe_id: expected a URI/],
    ['a spiffe_id that is a number', ev({ spiffe_id: 7}), /events\[1\]\.spiffe_id/],
    ['a detail over 512 characters', ev({ detail: 'x'.repeat(513) }), /events\[1\]\.detail: longer than 512 characters/],
    ['a detail that forges a log line', ev({ detail: 'ok\nmesh_refused subject=spiffe://x' }), /events\[1\]\.detail: expected printable ASCII/],
    ['an unknown field', ev({ severity: 'low' }), /events\[1\]\.severity: unknown field/],
    ['an event that is not an object', 'refused', /events\[1\]: expected an object/],
  ];
  for (const [what, second, message] of bad) {
    it(`refuses a batch with ${what} (400 naming index and field), recording nothing of it`, async () => {
      const before = await total();
      const r = await report({ events: [ev(), second, ev()] });
      assert.equal(r.status, 400, r.text);
      assert.match(errorOf(r), message);
      assert.equal(await total(), before, 'not even the valid events of the batch');
    });
  }

  it('refuses a body that is no batch, an empty one, one over the count limit, and one over the byte limit', async () => {
    const before = await total();
    for (const [body, status, message] of [
      [{}, 400, /missing required field "events"/],
      [{ events: ev() }, 400, /field "events": expected a list/],
      [{ events: [] }, 400, /the list is empty/],
      [{ events: Array.from({ length: MAX_BATCH_EVENTS + 1 }, () => ev({ detail: undefined, spiffe_id: undefined })) }, 400, /501 events; send at most 500/],
      [{ events: Array.from({ length: 200 }, () => ev({ detail: 'd'.repeat(400) })) }, 413, /send at most 65536 per request/],
    ] as const) {
      const r = await report(body);
      assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 60)}: ${r.text.slice(0, 200)}`);
      assert.match(errorOf(r), message);
    }
    assert.equal(await total(), before);
  });

  it('is authorized like any path: no credential, a token without policy, and root (no SPIFFE ID) are refused', async () => {
    const noPolicy = (await call('POST', 'auth/token/create', { body: { policies: [], no_default_policy: true } })).body.auth.client_token;
    const before = await total();
    assert.equal((await call('POST', 'mesh/events', { token: noPolicy, body: { events: [ev()] } })).status, 403);
    assert.equal((await call('POST', 'mesh/events', { token: null, body: { events: [ev()] } })).status, 403);
    const root = await call('POST', 'mesh/events', { body: { events: [ev()] } });
    assert.equal(root.status, 403);
    assert.match(errorOf(root), /only a workload/);
    // The workload policy opens writing events, not reading them.
    assert.equal((await call('GET', 'mesh/events', { token: null, cert: proxy.certPem, key: proxy.keyPem })).status, 403);
    assert.equal(await total(), before);
  });
});

describe('SecurityEvents.recordMany', () => {
  it('writes a batch in order in one transaction, and trimming still keeps only the newest 10,000', async () => {
    const commits: number[] = [];
    const stop = s.core.storage.subscribe((changes) => commits.push(changes.filter((c) => c.op === 'put' && c.key.includes('events/')).length));
    const batch = Array.from({ length: 10_000 }, (_, i) => ({ type: 'bulk_test', outcome: 'failure' as const, details: { i } }));
    await s.core.events.recordMany(batch);
    stop();
    // One commit holds the whole batch; the trim's commits (older events pushed out) put nothing.
    assert.deepEqual(commits.filter((n) => n > 0), [10_000]);
    await s.core.events.recordMany([{ type: 'bulk_test', outcome: 'failure', details: { i: 10_000 } }, { type: 'bulk_test', outcome: 'failure', details: { i: 10_001 } }]);
    const kept = await s.core.events.recent(20_000);
    assert.equal(kept.length, 10_000);
    assert.deepEqual(kept.slice(0, 3).map((e) => e.details?.i), [10_001, 10_000, 9_999]);
    assert.equal(kept.at(-1)!.details?.i, 2);
  });
});

describe('toWireEvent: what a proxy sends for its events', () => {
  it('keeps a well-formed event, makes details printable and short, and leaves out what the server would refuse', () => {
    assert.deepEqual(toWireEvent({ type: 'denied', reason: 'denied', direction: 'inbound', peer: '10.0.0.1:5', spiffeId: 'spiffe://aegis.local/ns/a/svc/b', detail: 'no' }),
      { type: 'denied', reason: 'denied', direction: 'inbound', peer: '10.0.0.1:5', spiffe_id: 'spiffe://aegis.local/ns/a/svc/b', detail: 'no' });
    const odd = toWireEvent({ type: 'refused', reason: 'bad_svid', direction: 'inbound', peer: '10.0.0.1:5', spiffeId: 'not a uri', detail: `a\nb${'x'.repeat(600)}` })!;
    assert.equal(odd.spiffe_id, undefined);
    assert.equal(odd.detail!.length, 512);
    assert.ok(odd.detail!.startsWith('a?b'));
    // A socket already gone has no address to report (inbound prints "?:?").
    assert.equal(toWireEvent({ type: 'refused', reason: 'protocol', direction: 'inbound', peer: '?:?' }), null);
    assert.ok(wireEventBytes(odd) > 512);
  });
});

// ── The proxy-side queue ────────────────────────────────────────────────────────────────────────

type Ev = { n: number };
const evs = (from: number, count: number): Ev[] => Array.from({ length: count }, (_, i) => ({ n: from + i }));
const ns = (batch: Ev[]) => batch.map((e) => e.n);

/** Bounded wait for a condition the queue reaches asynchronously (a send settling, a timer firing). */
async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('EventQueue: batching and order', () => {
  it('sends full batches at once and in order, and a partial batch after the flush interval', async () => {
    const batches: number[][] = [];
    const q = new EventQueue<Ev>({ send: async (b) => { batches.push(ns(b)); }, maxBatch: 3, flushIntervalMs: 200 });
    const t0 = Date.now();
    for (const e of evs(0, 7)) assert.equal(q.push(e), true);
    await until(() => batches.length === 2, 'the two full batches');
    assert.ok(Date.now() - t0 < 200, 'full batches do not wait for the interval');
    await until(() => batches.length === 3, 'the partial batch');
    assert.ok(Date.now() - t0 >= 195, 'the partial batch waited for the interval');
    assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5], [6]]);
    await until(() => q.stats().sent === 7, 'stats');
    assert.deepEqual(q.stats(), { queued: 0, sent: 7, dropped: 0, failedSends: 0, rejected: 0 });
  });

  it('cuts batches by bytes as well as by count (the server’s 64 KiB limit)', async () => {
    const batches: number[][] = [];
    const q = new EventQueue<Ev>({ send: async (b) => { batches.push(ns(b)); }, maxBatch: 100, maxBatchBytes: 250, sizeOf: () => 100, flushIntervalMs: 5 });
    for (const e of evs(0, 5)) q.push(e);
    await until(() => q.stats().sent === 5, 'all sent');
    assert.deepEqual(batches, [[0, 1], [2, 3], [4]]);
  });

  it('default limits fit the server: 500 realistic events per batch stay under 64 KiB of JSON', async () => {
    const sizes: number[] = [];
    const wide = toWireEvent({ type: 'refused', reason: 'wrong_identity', direction: 'outbound', peer: '[fd00:1234:5678::abcd]:65535', spiffeId: `spiffe://aegis.local/ns/${'n'.repeat(63)}/svc/${'s'.repeat(63)}`, detail: 'd'.repeat(300) })!;
    const q = new EventQueue<WireEvent>({ send: async (b) => { sizes.push(Buffer.byteLength(JSON.stringify({ events: b }))); }, sizeOf: wireEventBytes, maxBatchBytes: MAX_BATCH_BYTES - 64 });
    const t0 = Date.now();
    for (let i = 0; i < 600; i++) q.push(wide);
    await until(() => q.stats().sent === 600, 'all sent');
    // A batch cut by bytes means more is waiting: the next one goes at once, not after the 1 s flush interval
    // (five batches would take over 4 s).
    assert.ok(Date.now() - t0 < 2_000, `took ${Date.now() - t0} ms`);
    assert.ok(sizes.length >= 2 && sizes.every((n) => n <= MAX_BATCH_BYTES), `batch sizes ${sizes.join(', ')}`);
  });

  it('never has more than one send in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const q = new EventQueue<Ev>({
      send: async () => {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight -= 1;
      },
      maxBatch: 10, flushIntervalMs: 1,
    });
    for (let round = 0; round < 10; round++) {
      for (const e of evs(round * 25, 25)) q.push(e);
      await new Promise((r) => setImmediate(r));
    }
    await until(() => q.stats().sent === 250, 'all sent');
    assert.equal(most, 1);
  });
});

describe('EventQueue: bounded, never blocking traffic', () => {
  it('when full, drops the newest event and counts it; push says so', () => {
    const q = new EventQueue<Ev>({ send: async () => {}, capacity: 5, flushIntervalMs: 60_000 });
    const accepted = evs(0, 8).map((e) => q.push(e));
    assert.deepEqual(accepted, [true, true, true, true, true, false, false, false]);
    assert.deepEqual(q.stats(), { queued: 5, sent: 0, dropped: 3, failedSends: 0, rejected: 0 });
  });

  it('100,000 pushes in a tight loop finish fast and never throw, even with a send that throws', async () => {
    let got = 0;
    const q = new EventQueue<Ev>({ send: async (b) => { got += b.length; }, flushIntervalMs: 5 });
    const t0 = performance.now();
    for (let i = 0; i < 100_000; i++) q.push({ n: i });
    const took = performance.now() - t0;
    assert.ok(took < 500, `100k pushes took ${took.toFixed(0)} ms`);
    // The loop never yielded, so the flusher could not run: everything past the capacity was dropped and counted.
    assert.deepEqual(q.stats(), { queued: 10_000, sent: 0, dropped: 90_000, failedSends: 0, rejected: 0 });
    await until(() => q.stats().sent === 10_000, 'the held events sent');
    assert.equal(got, 10_000);

    const thrower = new EventQueue<Ev>({ send: () => { throw new Error('boom'); }, maxBatch: 1, initialBackoffMs: 60_000 });
    assert.doesNotThrow(() => { for (let i = 0; i < 1000; i++) thrower.push({ n: i }); });
    await until(() => thrower.stats().failedSends === 1, 'the synchronous throw counted as a failed send');
    await thrower.close(10);
  });
});

describe('EventQueue: failures', () => {
  it('retries a failed batch after a jittered, growing backoff, keeping order', async () => {
    const attempts: { at: number; batch: number[] }[] = [];
    const retries: (number | null)[] = [];
    let failuresLeft = 3;
    const q = new EventQueue<Ev>({
      send: async (b) => {
        attempts.push({ at: Date.now(), batch: ns(b) });
        if (failuresLeft-- > 0) throw new Error('server unavailable');
      },
      maxBatch: 4, initialBackoffMs: 40, maxBackoffMs: 100, random: () => 0.5, flushIntervalMs: 5,
      onSendError: (_err, info) => retries.push(info.retryInMs),
    });
    for (const e of evs(0, 4)) q.push(e);
    await until(() => q.stats().sent === 4, 'delivery after the outage');
    // Equal jitter with random 0.5: 3/4 of 40, 80, then 100 (capped).
    assert.deepEqual(retries, [30, 60, 75]);
    assert.equal(attempts.length, 4);
    for (const a of attempts) assert.deepEqual(a.batch, [0, 1, 2, 3]);
    for (let i = 1; i < attempts.length; i++) {
      assert.ok(attempts[i]!.at - attempts[i - 1]!.at >= retries[i - 1]! - 2, `attempt ${i} came ${attempts[i]!.at - attempts[i - 1]!.at} ms after the previous`);
    }
    assert.deepEqual(q.stats(), { queued: 0, sent: 4, dropped: 0, failedSends: 3, rejected: 0 });
  });

  it('during an outage holds at most its capacity, counts the drops, then delivers what it held in order', async () => {
    let up = false;
    const batches: number[][] = [];
    const q = new EventQueue<Ev>({
      send: async (b) => {
        if (!up) throw new Error('connection refused');
        batches.push(ns(b));
      },
      capacity: 10, maxBatch: 4, initialBackoffMs: 10, maxBackoffMs: 20, flushIntervalMs: 1,
    });
    for (const e of evs(0, 4)) q.push(e);
    await until(() => q.stats().failedSends >= 2, 'failed sends');
    for (const e of evs(4, 11)) q.push(e);
    assert.equal(q.stats().queued, 10);
    assert.equal(q.stats().dropped, 5);
    up = true;
    await until(() => q.stats().sent === 10, 'recovery');
    assert.deepEqual(batches.flat(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(batches.every((b) => b.length <= 4));
  });

  it('drops a batch the server refused for good (BatchRejectedError) instead of retrying it forever', async () => {
    const batches: number[][] = [];
    const q = new EventQueue<Ev>({
      send: async (b) => {
        batches.push(ns(b));
        if (b[0]!.n === 0) throw new BatchRejectedError('400 events[1].peer');
      },
      maxBatch: 2, flushIntervalMs: 1, initialBackoffMs: 60_000,
    });
    for (const e of evs(0, 4)) q.push(e);
    await until(() => q.stats().sent === 2, 'the next batch');
    assert.deepEqual(batches, [[0, 1], [2, 3]]);
    assert.deepEqual(q.stats(), { queued: 0, sent: 2, dropped: 0, failedSends: 1, rejected: 2 });
  });

  it('aborts a send that does not answer in time and retries it', async () => {
    let calls = 0;
    let aborted = false;
    const q = new EventQueue<Ev>({
      send: (_b, signal) => {
        calls += 1;
        if (calls > 1) return Promise.resolve();
        return new Promise((_, reject) => signal.addEventListener('abort', () => { aborted = true; reject(signal.reason); }));
      },
      sendTimeoutMs: 20, initialBackoffMs: 10, flushIntervalMs: 1,
    });
    q.push({ n: 1 });
    await until(() => q.stats().sent === 1, 'the retry');
    assert.equal(aborted, true);
    assert.equal(q.stats().failedSends, 1);
  });
});

describe('EventQueue: close', () => {
  it('flushes what it holds once, in batches, then drops and counts later pushes', async () => {
    const batches: number[][] = [];
    const q = new EventQueue<Ev>({ send: async (b) => { batches.push(ns(b)); }, maxBatch: 500, flushIntervalMs: 60_000 });
    for (const e of evs(0, 1200)) q.push(e);
    await new Promise((r) => setImmediate(r));
    const stats = await q.close(2_000);
    assert.deepEqual(batches.map((b) => b.length), [500, 500, 200]);
    assert.deepEqual(batches.flat(), ns(evs(0, 1200)));
    assert.deepEqual(stats, { queued: 0, sent: 1200, dropped: 0, failedSends: 0, rejected: 0 });
    assert.equal(q.push({ n: 9 }), false);
    assert.equal(q.stats().dropped, 1);
  });

  it('keeps its deadline when the server hangs: what could not be sent is counted as dropped', async () => {
    const q = new EventQueue<Ev>({ send: (_b, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))), maxBatch: 2, flushIntervalMs: 1 });
    for (const e of evs(0, 5)) q.push(e);
    await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    const stats = await q.close(50);
    const took = Date.now() - t0;
    assert.ok(took < 1_000, `close took ${took} ms`);
    assert.deepEqual({ ...stats, failedSends: 0 }, { queued: 0, sent: 0, dropped: 5, failedSends: 0, rejected: 0 });
  });

  it('a retry pending at close is sent by the close flush, not lost', async () => {
    let fail = true;
    const sent: number[] = [];
    const q = new EventQueue<Ev>({ send: async (b) => { if (fail) throw new Error('down'); sent.push(...ns(b)); }, initialBackoffMs: 60_000, flushIntervalMs: 1 });
    for (const e of evs(0, 3)) q.push(e);
    await until(() => q.stats().failedSends === 1, 'the failure');
    fail = false;
    const stats = await q.close(1_000);
    assert.deepEqual(sent, [0, 1, 2]);
    assert.equal(stats.sent, 3);
  });
});

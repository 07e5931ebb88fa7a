import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as http2Connect, createSecureServer, type Http2SecureServer } from 'node:http2';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Balancer, InboundListener, OutboundConnector, PeerVerifier, type BalancerOptions, type OutboundOptions } from '../../src/mesh/proxy/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { issueSvid, meshWorld, startEchoApp, type TestSvid, type TrustDomainCa } from './proxy-fixtures.js';

// The outbound balancer: unit tests of the pure Balancer (fake clock, seeded random), then the OutboundConnector
// using it over real mTLS on 127.0.0.1 (retries, ejection, least-request spread) and the ALPN choice of http mode.

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

class FakeClock {
  t = 1_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

const A = '10.0.0.1:8443';
const B = '10.0.0.2:8443';
const C = '10.0.0.3:8443';

function balancer(endpoints: string[], opts: BalancerOptions = {}, clock = new FakeClock()): { b: Balancer; clock: FakeClock } {
  return { b: new Balancer(endpoints, { random: seeded(42), now: clock.now, ...opts }), clock };
}

function picks(b: Balancer, n: number, exclude?: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(b.pick(exclude)?.address ?? 'null');
  return out;
}

function status(b: Balancer, address: string) {
  const s = b.snapshot().find((x) => x.address === address);
  assert.ok(s, `no status for ${address}`);
  return s;
}

function fail(b: Balancer, ep: string, times: number): void {
  for (let i = 0; i < times; i++) b.failure(ep);
}

describe('Balancer: picking', () => {
  it('round robin goes through the endpoints in order, skipping excluded ones', () => {
    const { b } = balancer([A, B, C], { policy: 'round-robin' });
    assert.deepEqual(picks(b, 7), [A, B, C, A, B, C, A]);
    assert.deepEqual(picks(b, 3, new Set([C])), [B, A, B]);
    assert.equal(b.pick(new Set([A, B, C])), null);
  });

  it('least-request (p2c) never picks an endpoint busier than both others, and favours the idlest', () => {
    const { b } = balancer([A, B, C]);
    for (let i = 0; i < 5; i++) b.begin(A);
    b.begin(C);
    const counts = new Map<string, number>([[A, 0], [B, 0], [C, 0]]);
    for (const p of picks(b, 1_000)) counts.set(p, counts.get(p)! + 1);
    assert.equal(counts.get(A), 0, 'the endpoint with 5 active is never chosen');
    assert.ok(counts.get(B)! > counts.get(C)!, `B (0 active) beats C (1 active): ${[...counts]}`);
    assert.ok(counts.get(C)! > 200, 'C still gets its share when it is the lesser of its pair');
  });

  it('least-request with ≤ 2 endpoints takes the lesser; equal loads rotate', () => {
    const { b } = balancer([A, B]);
    b.begin(A);
    assert.deepEqual(picks(b, 4), [B, B, B, B]);
    b.begin(B);
    b.begin(B);
    assert.deepEqual(picks(b, 3), [A, A, A]);
    b.end(B);
    assert.deepEqual(new Set(picks(b, 2)), new Set([A, B]), 'ties alternate');
    // Held connections spread evenly.
    const { b: even } = balancer([A, B]);
    for (let i = 0; i < 20; i++) even.begin(even.pick()!);
    assert.deepEqual(even.snapshot().map((s) => s.active), [10, 10]);
  });

  it('least-request spreads held connections over 3 endpoints within ±1', () => {
    const { b } = balancer([A, B, C], { random: seeded(7) });
    for (let i = 0; i < 300; i++) b.begin(b.pick()!);
    for (const s of b.snapshot()) assert.ok(Math.abs(s.active - 100) <= 1, `${s.address}: ${s.active}`);
  });

  it('begin/end count in-flight connections and never go below zero; unknown endpoints are ignored', () => {
    const { b } = balancer([A]);
    const ep = b.pick()!;
    b.begin(ep);
    b.begin(A);
    assert.equal(status(b, A).active, 2);
    b.end(ep);
    b.end(ep);
    b.end(ep);
    assert.equal(status(b, A).active, 0);
    b.begin('10.9.9.9:1');
    b.failure('10.9.9.9:1');
    assert.equal(b.snapshot().length, 1);
  });
});

describe('Balancer: outlier ejection', () => {
  it('ejects after 5 consecutive failures (a success in between resets the count), for 30 s', () => {
    const { b, clock } = balancer([A, B, C], { policy: 'round-robin' });
    fail(b, A, 4);
    b.success(A);
    fail(b, A, 4);
    assert.equal(status(b, A).ejected, false);
    assert.equal(status(b, A).consecutiveFailures, 4);
    b.failure(A);
    const s = status(b, A);
    assert.deepEqual([s.ejected, s.probation, s.ejections, s.ejectedUntil, s.consecutiveFailures], [true, false, 1, clock.t + 30_000, 5]);
    assert.equal(b.ejections, 1);
  });

  it('an ejected endpoint is not picked while ejected (either policy)', () => {
    for (const policy of ['round-robin', 'least-request'] as const) {
      const { b, clock } = balancer([A, B, C], { policy });
      fail(b, A, 5);
      assert.ok(!picks(b, 300).includes(A), policy);
      clock.advance(29_999);
      assert.ok(!picks(b, 300).includes(A), policy);
    }
  });

  it('probes back after the ejection time: the next pick goes to it, one probe at a time; success restores it', () => {
    const { b, clock } = balancer([A, B, C], { policy: 'round-robin' });
    fail(b, A, 5);
    clock.advance(30_000);
    const st = status(b, A);
    assert.deepEqual([st.ejected, st.probation], [true, true]);
    assert.equal(b.pick()?.address, A, 'the probe');
    assert.ok(!picks(b, 10).includes(A), 'no other traffic while the probe is out');
    b.success(A);
    const after = status(b, A);
    assert.deepEqual([after.ejected, after.probation, after.consecutiveFailures], [false, false, 0]);
    assert.ok(picks(b, 3).includes(A), 'back in rotation');
  });

  it('a failed probe re-ejects at once for twice the time; the multiplier decays while in service', () => {
    const { b, clock } = balancer([A, B, C]);
    fail(b, A, 5);
    clock.advance(30_000);
    assert.equal(b.pick()?.address, A);
    b.failure(A);
    let s = status(b, A);
    assert.deepEqual([s.ejected, s.probation, s.ejections, s.ejectionMultiplier, s.ejectedUntil], [true, false, 2, 2, clock.t + 60_000]);
    clock.advance(59_999);
    assert.ok(!picks(b, 50).includes(A));
    clock.advance(1);
    assert.equal(b.pick()?.address, A);
    b.failure(A);
    assert.equal(status(b, A).ejectedUntil, clock.t + 90_000, 'third time: 3 × base');
    // Capped by maxEjectionMs.
    const { b: capped, clock: c2 } = balancer([A, B], { outlier: { baseEjectionMs: 1_000, maxEjectionMs: 2_500 } });
    fail(capped, A, 5);
    for (let i = 0; i < 4; i++) {
      c2.advance(10_000);
      assert.equal(capped.pick()?.address, A);
      capped.failure(A);
    }
    assert.equal(status(capped, A).ejectedUntil, c2.t + 2_500);
    // Decay: restored, then 20 s (2 intervals) in service: multiplier 3 → 1, so the next ejection is 2 × base.
    clock.advance(90_000);
    assert.equal(b.pick()?.address, A);
    b.success(A);
    assert.equal(status(b, A).ejectionMultiplier, 3);
    clock.advance(20_000);
    fail(b, A, 5);
    s = status(b, A);
    assert.deepEqual([s.ejectionMultiplier, s.ejectedUntil], [2, clock.t + 60_000]);
  });

  it('maxEjectionPercent caps how many are out at once (the first ejection is always allowed)', () => {
    const eps = ['10.0.1.1:1', '10.0.1.2:1', '10.0.1.3:1', '10.0.1.4:1'];
    const { b } = balancer(eps);
    for (const ep of eps) fail(b, ep, 5);
    assert.deepEqual(b.snapshot().map((s) => s.ejected), [true, true, false, false], '50 % of 4');
    assert.equal(b.overflows, 2);
    // 10 % of 4 endpoints still ejects one (Envoy: at least one host regardless of the value).
    const { b: tight } = balancer(eps, { outlier: { maxEjectionPercent: 10 } });
    for (const ep of eps) fail(tight, ep, 5);
    assert.deepEqual(tight.snapshot().map((s) => s.ejected), [true, false, false, false]);
    // An overflowed endpoint is ejected on its next failure once room frees up.
    const { b: two, clock } = balancer([A, B, C]);
    fail(two, A, 5);
    fail(two, B, 5);
    assert.equal(status(two, B).ejected, false);
    clock.advance(30_000);
    assert.equal(two.pick()?.address, A);
    two.success(A);
    two.failure(B);
    assert.equal(status(two, B).ejected, true);
  });

  it('panic mode: with every endpoint ejected, pick returns the one whose ejection ends soonest', () => {
    const { b, clock } = balancer([A, B], { outlier: { maxEjectionPercent: 100 } });
    fail(b, A, 5);
    clock.advance(1_000);
    fail(b, B, 5);
    assert.deepEqual(b.snapshot().map((s) => s.ejected), [true, true]);
    assert.deepEqual(picks(b, 3), [A, A, A]);
    assert.equal(b.pick(new Set([A]))?.address, B, 'the rest excluded: the other ejected one rather than nothing');
    // A single endpoint can always be ejected, and is still returned.
    const { b: one } = balancer([A]);
    fail(one, A, 5);
    assert.equal(status(one, A).ejected, true);
    assert.equal(one.pick()?.address, A);
    // A success in panic proves it reachable: back in service.
    one.success(A);
    assert.equal(status(one, A).ejected, false);
  });

  it('setEndpoints keeps the state of endpoints that stay and drops the rest', () => {
    const { b, clock } = balancer([A, B, C]);
    fail(b, A, 5);
    b.begin(B);
    b.begin(B);
    fail(b, C, 3);
    b.setEndpoints([B, A, '10.0.0.4:8443', B]);
    assert.deepEqual(b.addresses(), [B, A, '10.0.0.4:8443']);
    assert.deepEqual([status(b, A).ejected, status(b, A).ejectedUntil], [true, clock.t + 30_000]);
    assert.equal(status(b, B).active, 2);
    assert.deepEqual(status(b, '10.0.0.4:8443'), { address: '10.0.0.4:8443', active: 0, ejected: false, probation: false, consecutiveFailures: 0, ejections: 0, ejectionMultiplier: 0 });
    assert.ok(!picks(b, 20).includes(A));
    // C dropped and re-added starts afresh.
    b.setEndpoints([A, B, C]);
    assert.equal(status(b, C).consecutiveFailures, 0);
  });
});

// ---- integration: OutboundConnector over real mTLS ----

let ca: TrustDomainCa;
let app: Awaited<ReturnType<typeof startEchoApp>>;
let verifier: PeerVerifier;
let apiSvid: TestSvid;
let webSvid: TestSvid;

before(async () => {
  ({ ca, verifier, apiSvid, webSvid } = await meshWorld());
  app = await startEchoApp();
});

async function inbound(): Promise<InboundListener> {
  const l = await InboundListener.start({
    listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port }, credentials: apiSvid, verifier,
    authorize: (id) => id === webSvid.spiffeId,
  });
  onCleanup(() => l.close());
  return l;
}

async function outbound(instances: string[], opts: Partial<OutboundOptions> = {}): Promise<OutboundConnector> {
  const o = await OutboundConnector.start({
    listen: { host: '127.0.0.1', port: 0 }, expectedSpiffeId: apiSvid.spiffeId, instances, credentials: webSvid, verifier, ...opts,
  });
  onCleanup(() => o.close());
  return o;
}

const at = (l: { port: number }) => `127.0.0.1:${l.port}`;

async function deadPort(): Promise<string> {
  const dead = createServer();
  dead.listen(0, '127.0.0.1');
  await once(dead, 'listening');
  const port = (dead.address() as AddressInfo).port;
  await new Promise((r) => dead.close(r));
  return `127.0.0.1:${port}`;
}

/** Connects to the local side, sends a line and waits (bounded) for its echo; the socket stays open. */
async function echoed(port: number, line: string): Promise<Socket> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => {});
  onCleanup(() => socket.destroy());
  await once(socket, 'connect');
  let got = '';
  socket.setEncoding('utf8').on('data', (d: string) => { got += d; });
  socket.write(`${line}\n`);
  const deadline = Date.now() + 5_000;
  while (!got.includes(`${line}\n`)) {
    if (socket.destroyed || Date.now() > deadline) throw new Error(`no echo of ${line} (got ${JSON.stringify(got)})`);
    await new Promise((r) => socket.once('data', r).once('close', r));
  }
  return socket;
}

async function until(pred: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('OutboundConnector with the balancer', () => {
  it('3 instances, one dead: 30 connections all succeed, the dead one is ejected after 5 failures and then left alone', async () => {
    const [a, b, dead] = [await inbound(), await inbound(), await deadPort()];
    const web = await outbound([at(a), dead, at(b)]);
    for (let i = 0; i < 30; i++) {
      const s = await echoed(web.port, `line ${i}`);
      s.destroy();
    }
    assert.equal(a.stats().accepted + b.stats().accepted, 30);
    const st = web.endpoints().find((e) => e.address === dead)!;
    assert.deepEqual([st.ejected, st.ejections, st.consecutiveFailures], [true, 1, 5]);
    assert.ok(st.ejectedUntil! > Date.now() + 20_000);
    assert.deepEqual([web.stats().failedAttempts, web.stats().ejections, web.stats().unavailable], [5, 1, 0], 'no attempt on it after the ejection');
    assert.deepEqual(web.instanceList(), [at(a), dead, at(b)]);
    await until(() => web.endpoints().every((e) => e.active === 0));
  });

  it('least-request spreads 20 held connections over 2 instances evenly, and releases them on close', async () => {
    const [a, b] = [await inbound(), await inbound()];
    const web = await outbound([at(a), at(b)]);
    const held = await Promise.all(Array.from({ length: 20 }, (_, i) => echoed(web.port, `held ${i}`)));
    const [na, nb] = [a.stats().active, b.stats().active];
    assert.equal(na + nb, 20);
    assert.ok(Math.abs(na - nb) <= 4, `${na}/${nb}`);
    assert.deepEqual(web.endpoints().map((e) => e.active), [na, nb]);
    // Busy a: new connections go to b.
    for (const s of held.slice(0, 10)) s.destroy();
    await until(() => web.endpoints().reduce((n, e) => n + e.active, 0) === 10);
    for (const s of held.slice(10)) s.destroy();
    await until(() => web.endpoints().every((e) => e.active === 0) && web.stats().active === 0);
  });

  it('a wrong_identity refusal counts as a failure of that instance', async () => {
    const impostor = await InboundListener.start({
      listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port }, credentials: issueSvid(ca, 'payments'), verifier,
      authorize: () => true,
    });
    onCleanup(() => impostor.close());
    const api = await inbound();
    const web = await outbound([at(impostor), at(api)], { lb: 'round-robin', outlier: { consecutiveFailures: 2 } });
    for (let i = 0; i < 4; i++) (await echoed(web.port, `x${i}`)).destroy();
    const st = web.endpoints().find((e) => e.address === at(impostor))!;
    assert.equal(st.ejected, true);
    assert.equal(web.stats().failedAttempts, 2);
    assert.equal(impostor.stats().accepted, 0);
  });

  it('setInstances keeps the ejection of an instance that stays', async () => {
    const [a, dead] = [await inbound(), await deadPort()];
    const web = await outbound([dead, at(a)], { lb: 'round-robin', outlier: { consecutiveFailures: 1 } });
    (await echoed(web.port, 'first')).destroy();
    assert.equal(web.endpoints()[0]!.ejected, true);
    const b = await inbound();
    web.setInstances([at(b), dead, at(a)]);
    assert.deepEqual(web.endpoints().map((e) => e.ejected), [false, true, false]);
    for (let i = 0; i < 4; i++) (await echoed(web.port, `y${i}`)).destroy();
    assert.equal(web.stats().failedAttempts, 1);
    assert.equal(b.stats().accepted, 2);
  });
});

describe('ALPN for http mode', () => {
  let server: Http2SecureServer;
  let upstream: string;
  const seen: string[] = [];

  before(async () => {
    // An upstream that speaks both, answers with the ALPN protocol it negotiated and records it.
    server = createSecureServer({
      key: apiSvid.keyPem, cert: apiSvid.certChainPem, ca: apiSvid.bundlePem, requestCert: true, rejectUnauthorized: true,
      allowHTTP1: true, minVersion: 'TLSv1.3',
    }, (req, res) => {
      const proto = (req.socket as TLSSocket).alpnProtocol || 'none';
      seen.push(proto);
      res.end(`${proto} ${req.url}`);
    });
    server.on('secureConnection', (s: TLSSocket) => s.on('error', () => {}));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    upstream = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    onCleanup(() => new Promise((r) => { server.close(() => r(undefined)); }));
  });

  it('an HTTP/2 client (prior knowledge) gets h2 upstream; every byte arrives', async () => {
    const web = await outbound([upstream], { alpn: true });
    const session = http2Connect(`http://127.0.0.1:${web.port}`);
    session.on('error', () => {});
    onCleanup(() => session.destroy());
    const body = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no HTTP/2 answer within 5 s')), 5_000);
      const req = session.request({ ':path': '/two' });
      let data = '';
      req.setEncoding('utf8').on('data', (d: string) => { data += d; });
      req.on('end', () => { clearTimeout(timer); resolve(data); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'h2 /two');
    session.close();
  });

  it('an HTTP/1.1 request gets http/1.1 upstream', async () => {
    const web = await outbound([upstream], { alpn: true });
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: web.port, path: '/one', agent: false, timeout: 5_000 }, (res) => {
        let data = '';
        res.setEncoding('utf8').on('data', (d: string) => { data += d; });
        res.on('end', () => resolve(data));
      });
      req.on('timeout', () => req.destroy(new Error('no HTTP/1.1 answer within 5 s')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'http/1.1 /one');
  });

  it('a preface split over several chunks is reassembled and still chosen as h2', async () => {
    const web = await outbound([upstream], { alpn: true });
    const before = seen.length;
    const s = netConnect(web.port, '127.0.0.1');
    s.on('error', () => {});
    onCleanup(() => s.destroy());
    await once(s, 'connect');
    s.setNoDelay(true);
    s.write('PRI * HTTP/2');
    await new Promise((r) => setTimeout(r, 50));
    s.write('.0\r\n\r\nSM\r\n');
    await new Promise((r) => setTimeout(r, 50));
    // The rest of the preface, then an empty SETTINGS frame: the server answers with its own SETTINGS.
    s.write(Buffer.concat([Buffer.from('\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
    const [first] = (await Promise.race([once(s, 'data'), new Promise((_, rej) => setTimeout(() => rej(new Error('no SETTINGS')), 5_000))])) as [Buffer];
    assert.equal(first[3], 4, 'an HTTP/2 SETTINGS frame came back');
    assert.equal(seen.length, before, 'no request yet');
  });

  it('a local connection that sends nothing is closed after the first-chunk timeout, without an upstream attempt', async () => {
    const web = await outbound([upstream], { alpn: true, firstChunkTimeoutMs: 200 });
    const s = netConnect(web.port, '127.0.0.1');
    s.on('error', () => {});
    onCleanup(() => s.destroy());
    await once(s, 'connect');
    const started = Date.now();
    await Promise.race([once(s, 'close'), new Promise((_, rej) => setTimeout(() => rej(new Error('not closed')), 3_000))]);
    assert.ok(Date.now() - started >= 150);
    assert.deepEqual([web.stats().connections, web.stats().failedAttempts], [0, 0]);
  });

  it('close() does not wait for a connection still awaiting its first bytes', async () => {
    const web = await OutboundConnector.start({
      listen: { host: '127.0.0.1', port: 0 }, expectedSpiffeId: apiSvid.spiffeId, instances: [upstream], credentials: webSvid, verifier, alpn: true,
    });
    const s = netConnect(web.port, '127.0.0.1');
    s.on('error', () => {});
    onCleanup(() => s.destroy());
    await once(s, 'connect');
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await web.close();
    assert.ok(Date.now() - started < 1_000, `close took ${Date.now() - started} ms`);
  });
});

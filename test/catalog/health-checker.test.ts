import { describe, it, before, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthChecker, type HealthCheckerOptions } from '../../src/catalog/checks/index.js';
import { MAX_OUTPUT, type CheckDefinition, type CheckHost, type CheckStatus, type CheckTarget } from '../../src/catalog/model.js';
import { onCleanup } from '../helpers/cleanup.js';

// The catalog (the CheckHost) is the one thing faked here: it records every call, so each test reads the exact
// sequence of status changes and outputs the checker sent. Everything the checks talk to is a real server.

type Call =
  | { kind: 'status'; id: string; status: CheckStatus; output: string; at: number }
  | { kind: 'output'; id: string; output: string; at: number }
  | { kind: 'deregister'; instanceId: string; reason: string; at: number };

class RecordingHost implements CheckHost {
  readonly calls: Call[] = [];
  /** How many of the next setStatus / deregister calls reject (a storage outage). */
  failStatus = 0;
  failDeregister = 0;
  private readonly waiters: { test: () => boolean; resolve: () => void }[] = [];

  async setStatus(_ns: string, id: string, status: CheckStatus, output: string): Promise<void> {
    this.push({ kind: 'status', id, status, output, at: performance.now() });
    if (this.failStatus > 0 && this.failStatus--) throw new Error('storage unavailable');
  }

  setOutput(_ns: string, id: string, output: string): void {
    this.push({ kind: 'output', id, output, at: performance.now() });
  }

  async deregister(_ns: string, instanceId: string, reason: string): Promise<void> {
    this.push({ kind: 'deregister', instanceId, reason, at: performance.now() });
    if (this.failDeregister > 0 && this.failDeregister--) throw new Error('storage unavailable');
  }

  /** The calls about one check (status and output), in order. */
  of(id: string): Call[] {
    return this.calls.filter((c) => c.kind !== 'deregister' && c.id === id);
  }

  /** Resolves with the matching calls once there are `n` of them (counting earlier ones); fails after `ms`. */
  async waitFor(match: (c: Call) => boolean, n = 1, ms = 3000): Promise<Call[]> {
    const found = () => this.calls.filter(match);
    if (found().length < n) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          new Promise<void>((resolve) => this.waiters.push({ test: () => found().length >= n, resolve })),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${n} matching calls, got ${found().length}: ${JSON.stringify(this.calls.slice(-5))}`)), ms);
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
    }
    return found().slice(0, n);
  }

  private push(call: Call): void {
    this.calls.push(call);
    for (const w of this.waiters.splice(0)) {
      if (w.test()) w.resolve();
      else this.waiters.push(w);
    }
  }
}

const statusOf = (id: string, status?: CheckStatus) => (c: Call) => c.kind === 'status' && c.id === id && (!status || c.status === status);
const anyOf = (id: string) => (c: Call) => c.kind !== 'deregister' && c.id === id;
const deregistration = (c: Call) => c.kind === 'deregister';

function def(id: string, over: Partial<CheckDefinition>): CheckDefinition {
  return {
    id, name: id, type: 'http', interval: 50, timeout: 1000, deregister_critical_after: 0,
    success_before_passing: 1, failures_before_critical: 1, ...over,
  };
}

function target(check: CheckDefinition, instanceId = 'web-1'): CheckTarget {
  return { namespace: 'default', instanceId, service: 'web', address: '127.0.0.1', port: 80, check };
}

const warnings: { obj: object; msg: string }[] = [];
const checkers: HealthChecker[] = [];

function checker(host: CheckHost, opts: Partial<HealthCheckerOptions> = {}): HealthChecker {
  const hc = new HealthChecker({ host, logger: { warn: (obj, msg) => warnings.push({ obj, msg }) }, ...opts });
  checkers.push(hc);
  return hc;
}

// Each test's checks stop with it, so no test sees another's probes.
afterEach(() => {
  for (const hc of checkers.splice(0)) hc.stop();
});

/** `promise`, or a failure naming `what` after `ms`: no wait in this file is unbounded. */
async function within<T>(promise: Promise<T>, what: string, ms = 3000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

/** Statuses the host was told, with `out` for an output-only call: the shape thresholds are asserted in. */
function sequence(calls: Call[]): string[] {
  return calls.map((c) => (c.kind === 'status' ? c.status : 'out'));
}

// --- the real servers the checks probe ---------------------------------------------------------------------------

let base = '';
let tcpAddress = '';
let closedAddress = '';
const hits = new Map<string, number>();
const methods: string[] = [];
const scripts = new Map<string, number[]>();
/** Requests in /hold/<key> at once, now and at most. */
const holding = new Map<string, { now: number; peak: number }>();
let holdingAll = { now: 0, peak: 0 };
let slowArrived: () => void = () => undefined;
let slowClosed: () => void = () => undefined;

function handle(req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  hits.set(path, (hits.get(path) ?? 0) + 1);
  const [, route, key = ''] = path.split('/');
  switch (route) {
    case 'ok': res.end('ok'); return;
    case 'busy': res.writeHead(429).end('slow down'); return;
    case 'fail': res.writeHead(500).end('boom'); return;
    case 'redirect': res.writeHead(302, { location: '/ok' }).end(); return;
    case 'method': methods.push(req.method ?? ''); res.end(); return;
    case 'big': res.end('x'.repeat(100 * 1024)); return;
    case 'script': {
      const codes = scripts.get(key)!;
      res.writeHead(codes.length > 1 ? codes.shift()! : codes[0]!).end(`step for ${key}`);
      return;
    }
    case 'slow': {
      slowArrived();
      const timer = setTimeout(() => res.end('late'), 5000);
      req.socket.once('close', () => { clearTimeout(timer); slowClosed(); });
      return;
    }
    case 'hold': {
      const h = holding.get(key) ?? { now: 0, peak: 0 };
      holding.set(key, h);
      h.now += 1; h.peak = Math.max(h.peak, h.now);
      holdingAll.now += 1; holdingAll.peak = Math.max(holdingAll.peak, holdingAll.now);
      setTimeout(() => { h.now -= 1; holdingAll.now -= 1; res.end('held'); }, 150);
      return;
    }
    default: res.writeHead(404).end();
  }
}

async function listenTcp(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  const http = createServer(handle);
  base = `http://${await listenTcp(http)}`;
  onCleanup(() => { http.closeAllConnections(); http.close(); });

  const tcp = createTcpServer((sock) => sock.destroy());
  tcpAddress = await listenTcp(tcp);
  onCleanup(() => tcp.close());

  // A port that was just listening and is now closed: connecting is refused.
  const gone = createTcpServer();
  closedAddress = await listenTcp(gone);
  await new Promise((resolve) => gone.close(resolve));
});

// --- the tests ---------------------------------------------------------------------------------------------------

describe('http checks (Consul semantics)', () => {
  it('a 2xx answer is passing, with Consul-style output: method, URL, status line, body', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-ok', { http: `${base}/ok` })), 'critical');
    hc.start();
    const [c] = await host.waitFor(statusOf('h-ok'));
    assert.deepEqual({ status: c!.kind === 'status' && c!.status, output: c!.kind === 'status' && c!.output },
      { status: 'passing', output: `HTTP GET ${base}/ok: 200 OK Output: ok` });
  });

  it('429 Too Many Requests is warning', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-busy', { http: `${base}/busy` })), 'passing');
    hc.start();
    const [c] = await host.waitFor(statusOf('h-busy'));
    assert.equal(c!.kind === 'status' && c!.status, 'warning');
    assert.equal(c!.kind === 'status' && c!.output, `HTTP GET ${base}/busy: 429 Too Many Requests Output: slow down`);
  });

  it('a 5xx answer is critical', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-fail', { http: `${base}/fail` })), 'passing');
    hc.start();
    const [c] = await host.waitFor(statusOf('h-fail'));
    assert.equal(c!.kind === 'status' && c!.status, 'critical');
    assert.equal(c!.kind === 'status' && c!.output, `HTTP GET ${base}/fail: 500 Internal Server Error Output: boom`);
  });

  it('a redirect is not followed: the 3xx itself is critical and its target is never fetched', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    const okBefore = hits.get('/ok') ?? 0;
    hc.upsert(target(def('h-redir', { http: `${base}/redirect` })), 'passing');
    hc.start();
    const [c] = await host.waitFor(statusOf('h-redir'));
    hc.stop();
    assert.equal(c!.kind === 'status' && c!.status, 'critical');
    assert.match(c!.kind === 'status' ? c!.output : '', /: 302 Found Output: $/);
    assert.equal(hits.get('/ok') ?? 0, okBefore);
  });

  it('an answer slower than the timeout is critical, and the connection is closed', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    const closed = new Promise<void>((resolve) => { slowClosed = resolve; });
    const started = performance.now();
    hc.upsert(target(def('h-slow', { http: `${base}/slow`, timeout: 100, interval: 200 })), 'passing');
    hc.start();
    const [c] = await host.waitFor(statusOf('h-slow'));
    hc.stop();
    assert.equal(c!.kind === 'status' && c!.output, `HTTP GET ${base}/slow: timed out after 100 ms`);
    // First run within one interval (200 ms), plus the 100 ms timeout; the server would answer after 5 s.
    assert.ok(c!.at - started < 1500, `gave up after ${Math.round(c!.at - started)} ms`);
    await within(closed, 'the timed-out probe to close its connection');
  });

  it('uses check.method, and reads at most MAX_OUTPUT of a large body', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-head', { http: `${base}/method`, method: 'head' })), 'critical');
    hc.upsert(target(def('h-big', { http: `${base}/big` })), 'critical');
    hc.start();
    await host.waitFor(statusOf('h-head', 'passing'));
    const [big] = await host.waitFor(statusOf('h-big', 'passing'));
    hc.stop();
    assert.equal(methods[0], 'HEAD');
    const output = big!.kind === 'status' ? big!.output : '';
    assert.equal(output.length, MAX_OUTPUT);
    assert.ok(output.startsWith(`HTTP GET ${base}/big: 200 OK Output: xxxx`));
  });

  it('a URL that does not parse, or a scheme other than http(s), is critical without any request', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-bad', { http: 'not a url' })), 'passing');
    hc.upsert(target(def('h-file', { http: 'file:///etc/passwd' })), 'passing');
    hc.start();
    const [bad] = await host.waitFor(statusOf('h-bad'));
    const [file] = await host.waitFor(statusOf('h-file'));
    assert.equal(bad!.kind === 'status' && bad!.output, 'HTTP GET not a url: not a valid URL');
    assert.match(file!.kind === 'status' ? file!.output : '', /unsupported scheme file:/);
  });
});

describe('tcp checks', () => {
  it('a port that accepts is passing; a closed port is critical with the error', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('t-up', { type: 'tcp', tcp: tcpAddress })), 'critical');
    hc.upsert(target(def('t-down', { type: 'tcp', tcp: closedAddress })), 'passing');
    hc.upsert(target(def('t-bad', { type: 'tcp', tcp: 'no-port-here' })), 'passing');
    hc.start();
    const [up] = await host.waitFor(statusOf('t-up'));
    const [down] = await host.waitFor(statusOf('t-down'));
    const [bad] = await host.waitFor(statusOf('t-bad'));
    assert.deepEqual(up, { ...up, status: 'passing', output: `TCP connect ${tcpAddress}: Success` });
    assert.equal(down!.kind === 'status' && down!.status, 'critical');
    assert.match(down!.kind === 'status' ? down!.output : '', new RegExp(`^TCP connect ${closedAddress}: .*ECONNREFUSED`));
    assert.equal(bad!.kind === 'status' && bad!.output, 'TCP connect no-port-here: not a host:port address');
  });
});

describe('thresholds', () => {
  it('failures_before_critical=3: scattered failures among successes never flip it; three in a row do; success_before_passing=2 to recover', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    scripts.set('flap', [500, 200, 500, 500, 200, 500, 500, 500, 200, 200, 200]);
    hc.upsert(target(def('flap', { http: `${base}/script/flap`, interval: 20, failures_before_critical: 3, success_before_passing: 2 })), 'passing');
    hc.start();
    const calls = await host.waitFor(anyOf('flap'), 11);
    hc.stop();
    assert.deepEqual(sequence(calls), ['out', 'out', 'out', 'out', 'out', 'out', 'out', 'critical', 'out', 'passing', 'out']);
    // Below the threshold the status holds, but operators still see the newest output.
    assert.match(calls[0]!.kind === 'output' ? calls[0]!.output : '', /500 Internal Server Error/);
  });

  it('a warning is applied when it is the result and, as in Consul, counts as a success and resets the failure streak', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    scripts.set('warn', [200, 429, 200, 500, 429, 500, 500]);
    hc.upsert(target(def('warn', { http: `${base}/script/warn`, interval: 20, failures_before_critical: 2, success_before_passing: 3 })), 'critical');
    hc.start();
    const calls = await host.waitFor(anyOf('warn'), 7);
    hc.stop();
    assert.deepEqual(sequence(calls), ['out', 'warning', 'passing', 'out', 'warning', 'out', 'critical']);
  });
});

describe('ttl checks', () => {
  it('with no report within the TTL, the check turns critical with "TTL expired"', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    const started = performance.now();
    hc.upsert(target(def('ttl-quiet', { type: 'ttl', ttl: 150 })), 'passing');
    hc.start();
    const [c] = await host.waitFor(statusOf('ttl-quiet'));
    assert.equal(c!.kind === 'status' && c!.status, 'critical');
    assert.equal(c!.kind === 'status' && c!.output, 'TTL expired');
    assert.ok(c!.at - started >= 140, `expired after ${Math.round(c!.at - started)} ms, TTL is 150`);
  });

  it('each report restarts the TTL, so a check reporting in time never expires; silence then expires it', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('ttl-alive', { type: 'ttl', ttl: 200 })), 'passing');
    hc.start();
    for (let i = 0; i < 6; i++) {
      await sleep(80);
      await hc.ttlUpdate('default', 'ttl-alive', 'passing', `beat ${i}`);
    }
    // 480 ms, more than twice the TTL: only outputs, no status change.
    assert.deepEqual(sequence(host.of('ttl-alive')), ['out', 'out', 'out', 'out', 'out', 'out']);
    const lastBeat = performance.now();
    const [c] = await host.waitFor(statusOf('ttl-alive', 'critical'));
    assert.ok(c!.at - lastBeat >= 150, 'expired one TTL after the last report');
  });

  it('a report sets the status at once (setStatus on a change, setOutput otherwise), truncated to MAX_OUTPUT', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('ttl-rep', { type: 'ttl', ttl: 10_000, failures_before_critical: 5, success_before_passing: 5 })), 'critical');
    hc.start();
    await hc.ttlUpdate('default', 'ttl-rep', 'passing', 'all good');
    await hc.ttlUpdate('default', 'ttl-rep', 'passing', 'still good');
    await hc.ttlUpdate('default', 'ttl-rep', 'warning', 'a'.repeat(MAX_OUTPUT - 1) + '😀 and more');
    const calls = host.of('ttl-rep');
    assert.deepEqual(sequence(calls), ['passing', 'out', 'warning']);
    assert.equal(calls[1]!.kind === 'output' && calls[1]!.output, 'still good');
    // Cut at MAX_OUTPUT characters without leaving half of a surrogate pair.
    assert.equal(calls[2]!.kind === 'status' && calls[2]!.output, 'a'.repeat(MAX_OUTPUT - 1));
  });

  it('a report for an unknown check is a 404; for an http check a 400; after stop() it is refused', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('not-ttl', { http: `${base}/ok`, interval: 60_000 })), 'passing');
    hc.upsert(target(def('ttl-late', { type: 'ttl', ttl: 10_000 })), 'passing');
    hc.start();
    await assert.rejects(hc.ttlUpdate('default', 'nope', 'passing', ''), { code: 'ERR_NOT_FOUND', status: 404, message: /no check "nope" in namespace "default"/ });
    await assert.rejects(hc.ttlUpdate('other', 'ttl-late', 'passing', ''), { status: 404 });
    await assert.rejects(hc.ttlUpdate('default', 'not-ttl', 'passing', ''), { code: 'ERR_BAD_REQUEST', status: 400, message: /is a http check: only TTL checks take reports/ });
    hc.stop();
    await assert.rejects(hc.ttlUpdate('default', 'ttl-late', 'passing', ''), /stopped/);
    assert.deepEqual(host.of('ttl-late'), []);
  });

  it('a report the catalog fails to record is thrown to the reporter, and the next report retries the change', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('ttl-retry', { type: 'ttl', ttl: 10_000 })), 'critical');
    hc.start();
    host.failStatus = 1;
    await assert.rejects(hc.ttlUpdate('default', 'ttl-retry', 'passing', 'up'), /storage unavailable/);
    await hc.ttlUpdate('default', 'ttl-retry', 'passing', 'up');
    assert.deepEqual(sequence(host.of('ttl-retry')), ['passing', 'passing']);
  });
});

describe('deregister_critical_after', () => {
  it('an instance critical for longer than deregister_critical_after is deregistered, once', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('t-dead', { type: 'tcp', tcp: closedAddress, interval: 30, deregister_critical_after: 200 }), 'web-dead'), 'passing');
    hc.start();
    const [crit] = await host.waitFor(statusOf('t-dead', 'critical'));
    const [dereg] = await host.waitFor(deregistration);
    assert.ok(dereg!.at - crit!.at >= 190, `deregistered ${Math.round(dereg!.at - crit!.at)} ms after turning critical`);
    assert.equal(dereg!.kind === 'deregister' && dereg!.instanceId, 'web-dead');
    assert.match(dereg!.kind === 'deregister' ? dereg!.reason : '', /check "t-dead" has been critical for \d+ ms, longer than its deregister_critical_after \(200 ms\)/);
    // The check keeps running (the catalog removes it); the deregistration is not repeated.
    await host.waitFor(anyOf('t-dead'), host.of('t-dead').length + 5);
    assert.equal(host.calls.filter(deregistration).length, 1);
  });

  it('a check that recovers before the deadline is not deregistered', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('ttl-blip', { type: 'ttl', ttl: 50, deregister_critical_after: 250 })), 'passing');
    hc.start();
    await host.waitFor(statusOf('ttl-blip', 'critical'));
    await sleep(100);
    await hc.ttlUpdate('default', 'ttl-blip', 'passing', 'back');
    // Expires again 50 ms later: a new critical spell, whose 250 ms have not run out when we look.
    await host.waitFor(statusOf('ttl-blip', 'critical'), 2);
    await sleep(150);
    hc.stop();
    assert.deepEqual(host.calls.filter(deregistration), []);
  });

  it('a deregistration the catalog fails is logged and tried again', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    host.failDeregister = 1;
    const before = warnings.length;
    hc.upsert(target(def('ttl-gone', { type: 'ttl', ttl: 10_000, deregister_critical_after: 60 })), 'critical');
    hc.start();
    await host.waitFor(deregistration, 2);
    assert.ok(warnings.slice(before).some((w) => w.msg === 'catalog refused to deregister a critical instance'));
  });
});

describe('lifecycle', () => {
  it('remove() stops a check: no more probes and no more host calls', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('h-rm', { http: `${base}/script/rm`, interval: 20 })), 'passing');
    scripts.set('rm', [200]);
    hc.start();
    await host.waitFor(anyOf('h-rm'), 3);
    hc.remove('default', 'h-rm');
    assert.equal(hc.size, 0);
    const calls = host.calls.length;
    const served = hits.get('/script/rm');
    await sleep(150);
    assert.equal(host.calls.length, calls);
    assert.equal(hits.get('/script/rm'), served);
  });

  it('stop() aborts an in-flight check and no host call follows', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    const arrived = new Promise<void>((resolve) => { slowArrived = resolve; });
    const closed = new Promise<void>((resolve) => { slowClosed = resolve; });
    hc.upsert(target(def('h-inflight', { http: `${base}/slow`, interval: 20, timeout: 3000 })), 'passing');
    hc.upsert(target(def('ttl-stop', { type: 'ttl', ttl: 60 })), 'passing');
    hc.upsert(target(def('t-stop', { type: 'tcp', tcp: tcpAddress, interval: 20 })), 'passing');
    hc.start();
    await within(arrived, 'the slow probe to reach the server');
    hc.stop();
    const calls = host.calls.length;
    // The probe's connection is closed by stop(), well before its 3 s timeout.
    await within(closed, 'stop() to close the in-flight probe', 2000);
    await sleep(200);
    assert.equal(host.calls.length, calls);
  });

  it('upsert() of an existing id replaces the definition: the old target is no longer probed', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    hc.upsert(target(def('swap', { http: `${base}/script/old`, interval: 20 })), 'passing');
    scripts.set('old', [500]);
    scripts.set('new', [200]);
    hc.start();
    await host.waitFor(statusOf('swap', 'critical'));
    hc.upsert(target(def('swap', { http: `${base}/script/new`, interval: 20 })), 'critical');
    assert.equal(hc.size, 1);
    await host.waitFor(statusOf('swap', 'passing'));
    const oldServed = hits.get('/script/old');
    await host.waitFor(anyOf('swap'), host.of('swap').length + 3);
    assert.equal(hits.get('/script/old'), oldServed);
  });

  it('a catalog that fails status changes is logged, never crashes, and the change is retried by the next result', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => rejections.push(r);
    process.on('unhandledRejection', onRejection);
    try {
      const before = warnings.length;
      host.failStatus = 2;
      hc.upsert(target(def('h-flaky-host', { http: `${base}/ok`, interval: 20 })), 'critical');
      hc.start();
      const calls = await host.waitFor(anyOf('h-flaky-host'), 4);
      hc.stop();
      assert.deepEqual(sequence(calls), ['passing', 'passing', 'passing', 'out']);
      assert.equal(warnings.slice(before).filter((w) => w.msg === 'catalog refused a health check status change').length, 2);
      await sleep(20);
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});

describe('load', () => {
  it('jitter: 200 checks registered at once with a 1 s interval have their first runs spread over the interval', async () => {
    const host = new RecordingHost();
    const hc = checker(host);
    for (let i = 0; i < 200; i++) hc.upsert(target(def(`j-${i}`, { type: 'tcp', tcp: tcpAddress, interval: 1000 })), 'passing');
    const started = performance.now();
    hc.start();
    const calls = await host.waitFor((c) => c.kind === 'output' && c.id.startsWith('j-'), 200, 5000);
    hc.stop();
    const firsts = new Map<string, number>();
    for (const c of calls) if (c.kind === 'output' && !firsts.has(c.id)) firsts.set(c.id, c.at - started);
    const delays = [...firsts.values()].sort((a, b) => a - b);
    // Uniform over [0, 1000): ~20 per 100 ms bucket. Without jitter all 200 land in the first bucket.
    const buckets = new Array(11).fill(0) as number[];
    for (const d of delays) buckets[Math.min(10, Math.floor(d / 100))]! += 1;
    assert.ok(Math.max(...buckets) <= 50, `first runs bunched: ${buckets.join(' ')}`);
    assert.ok(delays.at(-1)! - delays[0]! >= 600, `first runs spread over only ${Math.round(delays.at(-1)! - delays[0]!)} ms`);
    const median = delays[Math.floor(delays.length / 2)]!;
    assert.ok(median > 250 && median < 800, `median first run at ${Math.round(median)} ms`);
  });

  it('at most maxConcurrent probes are in flight; the rest queue; a slow check never overlaps itself', async () => {
    const host = new RecordingHost();
    const hc = checker(host, { maxConcurrent: 3 });
    holdingAll = { now: 0, peak: 0 };
    for (let i = 0; i < 12; i++) hc.upsert(target(def(`c-${i}`, { http: `${base}/hold/c-${i}`, interval: 20 })), 'passing');
    hc.start();
    await host.waitFor((c) => c.kind === 'output' && c.id.startsWith('c-'), 24, 5000);
    hc.stop();
    assert.equal(holdingAll.peak, 3, `peak in-flight probes ${holdingAll.peak}`);
    for (let i = 0; i < 12; i++) assert.ok((holding.get(`c-${i}`)?.peak ?? 0) <= 1, `check c-${i} overlapped itself`);
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { startAdminServer, type AdminServer } from '../../src/mesh/proxy/runtime/admin.js';
import { ProxyMetrics, REQUEST_BUCKETS, type ProxyMetricsSource } from '../../src/mesh/proxy/runtime/metrics.js';

// The sidecar's Prometheus metrics and its loopback admin server, over real HTTP on 127.0.0.1: a fake source whose
// numbers change between scrapes, the exposition parsed line by line.

type Upstream = ReturnType<ProxyMetricsSource['upstreams']>[number];

/** A ProxyMetricsSource whose numbers the test sets directly. */
class FakeSource implements ProxyMetricsSource {
  in: ReturnType<ProxyMetricsSource['inbound']> = { accepted: 0, active: 0, bytesIn: 0, bytesOut: 0 };
  ups: Upstream[] = [];
  expiresAt: number | null = null;
  stale = 0;
  ev = { queued: 0, sent: 0, dropped: 0 };
  throwOn: string | null = null;

  inbound() { this.maybeThrow('inbound'); return this.in ? { ...this.in } : null; }
  upstreams() { this.maybeThrow('upstreams'); return this.ups.map((u) => ({ ...u })); }
  svidExpiresAt() { return this.expiresAt; }
  stalenessSeconds() { return this.stale; }
  events() { return { ...this.ev }; }
  private maybeThrow(part: string) { if (this.throwOn === part) throw new Error(`${part} is broken`); }
}

function upstream(name: string, over: Partial<Upstream> = {}): Upstream {
  return { name, connections: 0, active: 0, bytesIn: 0, bytesOut: 0, failedAttempts: 0, unavailable: 0, ...over };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A tiny parser of the text exposition: `name{a="x",b="y"} value` lines; comments skipped. */
function parse(body: string): Sample[] {
  const out: Sample[] = [];
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    out.push({ name: m[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return out;
}

/** The value of the sample of `name` with exactly these labels (an absent label is not listed), or undefined. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels);
  const hits = samples.filter((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `several samples of ${name} ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

let admin: AdminServer;
let source: FakeSource;
let metrics: ProxyMetrics;
let ready = false;
let renewResult: (() => Promise<{ serial: string; expiresAt: number }>) = async () => ({ serial: '0a1b', expiresAt: Date.UTC(2030, 0, 1) });
let statusFn: () => unknown = () => ({ spiffe_id: 'spiffe://aegis.local/ns/shop/svc/web', staleness_seconds: 0 });

const base = () => `http://127.0.0.1:${admin.port}`;
const fetchT = (path: string, init: RequestInit = {}) => fetch(`${base()}${path}`, { ...init, signal: AbortSignal.timeout(5_000) });

async function scrape(): Promise<Sample[]> {
  const res = await fetchT('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

before(async () => {
  source = new FakeSource();
  metrics = new ProxyMetrics(source);
  admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 }, metrics,
    status: () => statusFn(), ready: () => ready, renew: () => renewResult(),
  });
});

after(async () => {
  await admin.close();
});

describe('proxy metrics: counters from the source’s cumulative totals', () => {
  it('exposes connections, bytes and active connections per direction and upstream', async () => {
    source.in = { accepted: 5, active: 2, bytesIn: 1000, bytesOut: 4000 };
    source.ups = [upstream('shop/api', { connections: 3, active: 1, bytesIn: 300, bytesOut: 900, failedAttempts: 2, unavailable: 1 })];
    const s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'inbound' }), 5);
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'inbound' }), 2);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'inbound', flow: 'rx' }), 1000);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'inbound', flow: 'tx' }), 4000);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/api' }), 3);
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'outbound', upstream: 'shop/api' }), 1);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'outbound', flow: 'rx', upstream: 'shop/api' }), 300);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'outbound', flow: 'tx', upstream: 'shop/api' }), 900);
    assert.equal(value(s, 'aegis_proxy_upstream_failed_attempts_total', { upstream: 'shop/api' }), 2);
    assert.equal(value(s, 'aegis_proxy_upstream_unavailable_total', { upstream: 'shop/api' }), 1);
    assert.equal(value(s, 'aegis_proxy_upstream_ejections_total', { upstream: 'shop/api' }), undefined, 'no ejections reported: no series');
    // Every sample is one of ours or a process metric, all with the proxy prefix.
    assert.ok(s.every((x) => x.name.startsWith('aegis_proxy_')), 'every metric carries the aegis_proxy_ prefix');
    assert.ok(s.some((x) => x.name.startsWith('aegis_proxy_process_')), 'default process metrics are there');
  });

  it('goes up by the delta between scrapes, and a second scrape with no change changes nothing', async () => {
    source.in = { accepted: 12, active: 0, bytesIn: 1500, bytesOut: 4100 };
    source.ups = [upstream('shop/api', { connections: 10, active: 4, bytesIn: 350, bytesOut: 1000, failedAttempts: 2, unavailable: 1, ejections: 1 })];
    let s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'inbound' }), 12);
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'inbound' }), 0);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'inbound', flow: 'rx' }), 1500);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/api' }), 10);
    assert.equal(value(s, 'aegis_proxy_upstream_ejections_total', { upstream: 'shop/api' }), 1);
    s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'inbound' }), 12);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'outbound', flow: 'tx', upstream: 'shop/api' }), 1000);
  });

  it('never goes down when the source’s totals are reset (a restarted connector): the new totals are added', async () => {
    // The connector restarted: its totals start again from zero and are at 4 connections, 50 bytes by now.
    source.ups = [upstream('shop/api', { connections: 4, active: 1, bytesIn: 50, bytesOut: 20, failedAttempts: 0, unavailable: 0, ejections: 0 })];
    source.in = { accepted: 2, active: 1, bytesIn: 10, bytesOut: 10 };
    let s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/api' }), 14, '10 before the restart + 4 since');
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'outbound', flow: 'rx', upstream: 'shop/api' }), 400);
    assert.equal(value(s, 'aegis_proxy_upstream_failed_attempts_total', { upstream: 'shop/api' }), 2, 'a reset to 0 adds nothing and keeps the counter');
    assert.equal(value(s, 'aegis_proxy_upstream_ejections_total', { upstream: 'shop/api' }), 1);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'inbound' }), 14);
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'outbound', upstream: 'shop/api' }), 1, 'gauges follow the source, down too');
    // After the restart, growth is counted from the new baseline.
    source.ups = [upstream('shop/api', { connections: 6, active: 0, bytesIn: 80, bytesOut: 20, failedAttempts: 1, unavailable: 0, ejections: 0 })];
    s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/api' }), 16);
    assert.equal(value(s, 'aegis_proxy_bytes_total', { direction: 'outbound', flow: 'rx', upstream: 'shop/api' }), 430);
    assert.equal(value(s, 'aegis_proxy_upstream_failed_attempts_total', { upstream: 'shop/api' }), 3);
  });

  it('keeps a removed upstream’s counters but drops its active gauge; a new upstream starts at its own totals', async () => {
    source.ups = [upstream('shop/db', { connections: 1, active: 1 })];
    const s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'outbound', upstream: 'shop/api' }), undefined);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/api' }), 16);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/db' }), 1);
    assert.equal(value(s, 'aegis_proxy_upstream_failed_attempts_total', { upstream: 'shop/db' }), 0, 'a known upstream’s counters exist at 0');
  });

  it('reports SVID expiry in seconds (negative once expired, absent without an SVID), staleness and the event queue', async () => {
    let s = await scrape();
    assert.equal(value(s, 'aegis_proxy_svid_expiry_seconds'), undefined, 'no SVID yet: no sample');
    source.expiresAt = Date.now() + 3_600_000;
    source.stale = 42;
    source.ev = { queued: 7, sent: 100, dropped: 3 };
    s = await scrape();
    const expiry = value(s, 'aegis_proxy_svid_expiry_seconds')!;
    assert.ok(Math.abs(expiry - 3600) < 5, `expiry ≈ 3600 s, got ${expiry}`);
    assert.equal(value(s, 'aegis_proxy_staleness_seconds'), 42);
    assert.equal(value(s, 'aegis_proxy_events_queued'), 7);
    assert.equal(value(s, 'aegis_proxy_events_sent_total'), 100);
    assert.equal(value(s, 'aegis_proxy_events_dropped_total'), 3);
    source.expiresAt = Date.now() - 90_000;
    source.ev = { queued: 0, sent: 130, dropped: 3 };
    s = await scrape();
    const expired = value(s, 'aegis_proxy_svid_expiry_seconds')!;
    assert.ok(expired < -85 && expired > -100, `expired 90 s ago, got ${expired}`);
    assert.equal(value(s, 'aegis_proxy_events_queued'), 0);
    assert.equal(value(s, 'aegis_proxy_events_sent_total'), 130);
  });

  it('a source part that throws keeps its previous values, is counted, and the scrape still answers', async () => {
    source.throwOn = 'upstreams';
    source.ups = [upstream('shop/db', { connections: 50 })];
    try {
      const s = await scrape();
      assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'outbound', upstream: 'shop/db' }), 1);
      assert.equal(value(s, 'aegis_proxy_metrics_source_errors_total', { source: 'upstreams' }), 1);
      assert.equal(value(s, 'aegis_proxy_staleness_seconds'), 42, 'the other parts are read');
    } finally {
      source.throwOn = null;
    }
  });

  it('inbound() null (listener not up yet): no active inbound gauge', async () => {
    source.in = null;
    const s = await scrape();
    assert.equal(value(s, 'aegis_proxy_connections_active', { direction: 'inbound' }), undefined);
    assert.equal(value(s, 'aegis_proxy_connections_total', { direction: 'inbound' }), 14, 'the counter stays');
    source.in = { accepted: 0, active: 0, bytesIn: 0, bytesOut: 0 };
  });
});

describe('proxy metrics: data-path hooks', () => {
  it('counts handshakes by direction and result, every known result present from the start', async () => {
    let s = await scrape();
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'outbound', result: 'wrong_identity' }), 0);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'ok' }), 0);
    for (let i = 0; i < 3; i++) metrics.handshake('inbound', 'ok');
    metrics.handshake('inbound', 'unknown_ca');
    metrics.handshake('outbound', 'wrong_identity');
    metrics.handshake('outbound', 'ok');
    s = await scrape();
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'ok' }), 3);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'unknown_ca' }), 1);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'outbound', result: 'wrong_identity' }), 1);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'outbound', result: 'ok' }), 1);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'wrong_identity' }), 0);
    metrics.handshake('inbound', 'ok');
    s = await scrape();
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'ok' }), 4, 'pending counts fold in once');
  });

  it('counts decisions by kind and result, and cuts by reason', async () => {
    metrics.decision('allow', 'connect');
    metrics.decision('allow', 'connect');
    metrics.decision('deny', 'connect');
    metrics.decision('deny', 'request');
    metrics.cut('revoked');
    metrics.cut('revoked');
    metrics.cut('denied');
    const s = await scrape();
    assert.equal(value(s, 'aegis_proxy_decisions_total', { kind: 'connect', result: 'allow' }), 2);
    assert.equal(value(s, 'aegis_proxy_decisions_total', { kind: 'connect', result: 'deny' }), 1);
    assert.equal(value(s, 'aegis_proxy_decisions_total', { kind: 'request', result: 'deny' }), 1);
    assert.equal(value(s, 'aegis_proxy_decisions_total', { kind: 'request', result: 'allow' }), 0);
    assert.equal(value(s, 'aegis_proxy_connections_cut_total', { reason: 'revoked' }), 2);
    assert.equal(value(s, 'aegis_proxy_connections_cut_total', { reason: 'denied' }), 1);
    assert.equal(value(s, 'aegis_proxy_connections_cut_total', { reason: 'expired' }), 0);
  });

  it('observes request latency into the histogram: cumulative buckets, _sum, _count', async () => {
    const h = 'aegis_proxy_request_duration_seconds';
    metrics.request(0.0003, 200, 'GET'); // ≤ 0.0005
    metrics.request(0.004, 204, 'GET'); // ≤ 0.005
    metrics.request(0.2, 201, 'GET'); // ≤ 0.25
    metrics.request(30, 200, 'GET'); // beyond 10 s: +Inf only
    const s = await scrape();
    const l = { method: 'GET', code_class: '2xx' };
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '0.0005' }), 1);
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '0.001' }), 1);
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '0.005' }), 2);
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '0.25' }), 3);
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '10' }), 3);
    assert.equal(value(s, `${h}_bucket`, { ...l, le: '+Inf' }), 4);
    assert.equal(value(s, `${h}_count`, l), 4);
    assert.ok(Math.abs(value(s, `${h}_sum`, l)! - 30.2043) < 1e-9);
    const les = s.filter((x) => x.name === `${h}_bucket` && x.labels.method === 'GET' && x.labels.code_class === '2xx').map((x) => x.labels.le);
    assert.deepEqual(les, [...REQUEST_BUCKETS.map(String), '+Inf'], 'buckets from 0.0005 to 10 s');
  });

  it('buckets statuses into code classes and unknown methods into other (bounded cardinality)', async () => {
    const h = 'aegis_proxy_request_duration_seconds';
    metrics.request(0.01, 404, 'POST');
    metrics.request(0.01, 403, 'POST');
    metrics.request(0.01, 503, 'DELETE');
    metrics.request(0.01, 302, 'GET');
    metrics.request(0.01, 200, 'PROPFIND');
    metrics.request(0.01, 200, 'get'); // methods are case-sensitive: not GET
    metrics.request(0.01, 200, 'X'.repeat(500));
    metrics.request(0.01, 0, 'GET'); // no status: other
    metrics.request(Number.NaN, 200, 'GET'); // ignored
    metrics.request(-1, 200, 'GET'); // ignored
    const s = await scrape();
    assert.equal(value(s, `${h}_count`, { method: 'POST', code_class: '4xx' }), 2);
    assert.equal(value(s, `${h}_count`, { method: 'DELETE', code_class: '5xx' }), 1);
    assert.equal(value(s, `${h}_count`, { method: 'GET', code_class: '3xx' }), 1);
    assert.equal(value(s, `${h}_count`, { method: 'other', code_class: '2xx' }), 3);
    assert.equal(value(s, `${h}_count`, { method: 'GET', code_class: 'other' }), 1);
    assert.equal(value(s, `${h}_count`, { method: 'GET', code_class: '2xx' }), 4, 'NaN and negative durations are not observed');
    const methods = new Set(s.filter((x) => x.name.startsWith(h)).map((x) => x.labels.method));
    assert.deepEqual([...methods].sort(), ['DELETE', 'GET', 'POST', 'other']);
    assert.ok(s.filter((x) => x.name.startsWith(h)).every((x) => /^([1-5]xx|other)$/.test(x.labels.code_class!)));
  });

  it('two ProxyMetrics in one process do not share a registry', async () => {
    const other = new ProxyMetrics(new FakeSource());
    other.handshake('inbound', 'ok');
    const s = parse((await other.render()).body);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'ok' }), 1);
    assert.equal(value(s, 'aegis_proxy_handshakes_total', { direction: 'inbound', result: 'unknown_ca' }), 0);
  });
});

describe('proxy admin server', () => {
  it('GET /ready: 503 not ready, then 200 ready', async () => {
    ready = false;
    let res = await fetchT('/ready');
    assert.equal(res.status, 503);
    assert.equal((await res.text()).trim(), 'not ready');
    ready = true;
    res = await fetchT('/ready');
    assert.equal(res.status, 200);
    assert.equal((await res.text()).trim(), 'ready');
    assert.equal(res.headers.get('cache-control'), 'no-store');
  });

  it('GET /status: the JSON of status(); a throwing status() is a 500, and the server keeps serving', async () => {
    let res = await fetchT('/status');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await res.json(), { spiffe_id: 'spiffe://aegis.local/ns/shop/svc/web', staleness_seconds: 0 });
    statusFn = () => { throw new Error('boom'); };
    res = await fetchT('/status');
    assert.equal(res.status, 500);
    assert.match(await res.text(), /status failed: boom/);
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    statusFn = () => circular;
    res = await fetchT('/status');
    assert.equal(res.status, 500);
    await res.text();
    statusFn = () => ({ ok: true });
    res = await fetchT('/status');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
  });

  it('POST /renew: 200 with the new serial and expiry, 502 with errors when renewal fails', async () => {
    let res = await fetchT('/renew', { method: 'POST' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { serial: '0a1b', expires_at: '2030-01-01T00:00:00.000Z' });
    renewResult = async () => { throw new Error('server unreachable'); };
    res = await fetchT('/renew', { method: 'POST' });
    assert.equal(res.status, 502);
    assert.deepEqual(await res.json(), { errors: ['renewal failed: server unreachable'] });
  });

  it('POST /renew without a renew function: 404', async () => {
    const bare = await startAdminServer({ listen: { host: '127.0.0.1', port: 0 }, metrics, status: () => ({}), ready: () => true });
    try {
      const res = await fetch(`http://127.0.0.1:${bare.port}/renew`, { method: 'POST', signal: AbortSignal.timeout(5_000) });
      assert.equal(res.status, 404);
      assert.ok(Array.isArray(((await res.json()) as { errors: unknown }).errors));
    } finally {
      await bare.close();
    }
  });

  it('wrong method on a known path: 405 with Allow; unknown path: 404; HEAD works on GET routes', async () => {
    let res = await fetchT('/metrics', { method: 'POST' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, HEAD');
    await res.text();
    res = await fetchT('/renew');
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    await res.text();
    for (const path of ['/nope', '/', '/metrics/extra', '/__proto__', '/stats/prometheus']) {
      res = await fetchT(path);
      assert.equal(res.status, 404, path);
      await res.text();
    }
    res = await fetchT('/metrics?name[]=x');
    assert.equal(res.status, 200, 'a query string is ignored');
    await res.text();
    res = await fetchT('/ready', { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), '');
  });

  it('refuses a non-loopback Host or Origin (DNS rebinding, cross-site POST): 403', async () => {
    const raw = (path: string, method: string, headers: Record<string, string>) => new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: admin.port, path, method, headers, timeout: 5_000 }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(await raw('/status', 'GET', { host: 'evil.example:9901' }), 403);
    assert.equal(await raw('/renew', 'POST', { origin: 'https://evil.example' }), 403);
    assert.equal(await raw('/renew', 'POST', { origin: 'null' }), 403);
    assert.equal(await raw('/status', 'GET', { host: 'localhost:9901' }), 200);
    assert.equal(await raw('/status', 'GET', { host: '[::1]:9901', origin: 'http://127.0.0.1:3000' }), 200);
  });

  it('refuses to bind a non-loopback address (RangeError); 127.0.0.1, localhost and ::1 are accepted', async () => {
    for (const host of ['0.0.0.0', '::', '10.1.2.3', 'example.com', '']) {
      await assert.rejects(startAdminServer({ listen: { host, port: 0 }, metrics, status: () => ({}), ready: () => true }), RangeError, host);
    }
    for (const host of ['localhost', '::1']) {
      let s: AdminServer;
      try {
        s = await startAdminServer({ listen: { host, port: 0 }, metrics, status: () => ({}), ready: () => true });
      } catch (err) {
        // A host without IPv6 loopback cannot bind ::1; that is not what this test is about.
        if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') continue;
        throw err;
      }
      assert.ok(s.port > 0);
      await s.close();
    }
  });

  it('close() ends keep-alive connections and frees the port', async () => {
    const s = await startAdminServer({ listen: { host: '127.0.0.1', port: 0 }, metrics, status: () => ({}), ready: () => true });
    const res = await fetch(`http://127.0.0.1:${s.port}/ready`, { signal: AbortSignal.timeout(5_000) });
    await res.text();
    const t0 = Date.now();
    await s.close();
    assert.ok(Date.now() - t0 < 2_000, 'close does not wait for the keep-alive timeout');
    await assert.rejects(fetch(`http://127.0.0.1:${s.port}/ready`, { signal: AbortSignal.timeout(5_000) }));
  });
});

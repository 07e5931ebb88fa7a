import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { api, startTestServer, type Api, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { assertApiError, rawRequest } from './http-tools.js';

const SEAL_STATUS_KEYS = ['type', 'initialized', 'sealed', 't', 'n', 'progress', 'nonce', 'version'];

function assertSealStatusShape(body: Record<string, unknown>): void {
  for (const k of SEAL_STATUS_KEYS) assert.ok(k in body, `seal-status has ${k}: ${JSON.stringify(body)}`);
  assert.equal(typeof body.type, 'string');
  assert.equal(typeof body.initialized, 'boolean');
  assert.equal(typeof body.sealed, 'boolean');
  assert.ok(Number.isInteger(body.t) && Number.isInteger(body.n) && Number.isInteger(body.progress));
  assert.equal(typeof body.nonce, 'string');
  assert.match(String(body.version), /^\d+\.\d+\.\d+/);
}

describe('sys/health and sys/seal-status through the server lifecycle', () => {
  let s: InProcessServer;
  let keys: string[] = [];
  let rootToken = '';
  const health = (query = '') => s.api('GET', `sys/health${query}`, { token: null });
  const sealStatus = async () => {
    const r = await s.api('GET', 'sys/seal-status', { token: null });
    assert.equal(r.status, 200, r.text);
    assertSealStatusShape(r.body);
    return r.body;
  };

  before(async () => {
    s = await startTestServer({ initialize: false });
  });

  it('before init: sys/health is 501, and ?uninitcode= overrides it', async () => {
    const r = await health();
    assert.equal(r.status, 501);
    assert.equal(r.body.initialized, false);
    assert.equal(r.body.sealed, true);
    assert.equal((await health('?uninitcode=200')).status, 200);
    assert.equal((await health('?uninitcode=299')).status, 299);
    // Overrides for other states do not apply.
    assert.equal((await health('?sealedcode=200&activecode=200')).status, 501);
    assert.equal((await rawRequest(s.address, '/v1/sys/health', { method: 'HEAD' })).status, 501);
  });

  it('before init: sys/seal-status says not initialized, sealed, no shares', async () => {
    const st = await sealStatus();
    assert.deepEqual({ type: st.type, initialized: st.initialized, sealed: st.sealed, t: st.t, n: st.n, progress: st.progress, nonce: st.nonce },
      { type: 'shamir', initialized: false, sealed: true, t: 0, n: 0, progress: 0, nonce: '' });
  });

  it('after init over HTTP: sealed, sys/health is 503, and ?sealedcode= overrides it', async () => {
    const r = await s.api('POST', 'sys/init', { token: null, body: { secret_shares: 3, secret_threshold: 2 } });
    assert.equal(r.status, 200, r.text);
    keys = r.body.keys;
    rootToken = r.body.root_token;
    assert.equal(keys.length, 3);
    const h = await health();
    assert.equal(h.status, 503);
    assert.equal(h.body.initialized, true);
    assert.equal(h.body.sealed, true);
    assert.equal((await health('?sealedcode=200')).status, 200);
    assert.equal((await health('?uninitcode=200&activecode=200')).status, 503);
    assert.equal((await rawRequest(s.address, '/v1/sys/health', { method: 'HEAD' })).status, 503);
    // While sealed, everything but the exempt routes is 503 too.
    assertApiError(await s.api('GET', 'secret/data/x', { token: rootToken }), 503, /sealed/);
  });

  it('while sealed: sys/seal-status shows threshold, shares and unseal progress with a nonce', async () => {
    let st = await sealStatus();
    assert.deepEqual({ initialized: st.initialized, sealed: st.sealed, t: st.t, n: st.n, progress: st.progress }, { initialized: true, sealed: true, t: 2, n: 3, progress: 0 });
    const u = await s.api('POST', 'sys/unseal', { token: null, body: { key: keys[0] } });
    assert.equal(u.status, 200, u.text);
    st = await sealStatus();
    assert.equal(st.sealed, true);
    assert.equal(st.progress, 1);
    assert.notEqual(st.nonce, '', 'an unseal attempt in progress has a nonce');
    assert.equal((await health()).status, 503);
  });

  it('after unseal: sys/health is 200, and ?activecode= overrides it', async () => {
    const u = await s.api('POST', 'sys/unseal', { token: null, body: { key: keys[1] } });
    assert.equal(u.status, 200, u.text);
    assert.equal(u.body.sealed, false);
    const h = await health();
    assert.equal(h.status, 200);
    assert.deepEqual({ initialized: h.body.initialized, sealed: h.body.sealed, standby: h.body.standby }, { initialized: true, sealed: false, standby: false });
    assert.equal((await health('?activecode=299')).status, 299);
    assert.equal((await health('?sealedcode=299&uninitcode=299')).status, 200);
    const st = await sealStatus();
    assert.deepEqual({ sealed: st.sealed, progress: st.progress, nonce: st.nonce, t: st.t, n: st.n }, { sealed: false, progress: 0, nonce: '', t: 2, n: 3 });
  });

  it('an override that is not a status code from 200 to 599 is refused with 400, not answered with a broken status', async () => {
    for (const code of ['999', '600', '100', '0', 'abc', '2000']) {
      assertApiError(await health(`?activecode=${code}`), 400, /activecode must be an HTTP status code/);
    }
    assert.equal((await health()).status, 200, 'the server still answers');
  });

  it('after sys/seal: 503 again', async () => {
    const r = await s.api('POST', 'sys/seal', { token: rootToken, body: {} });
    assert.equal(r.status, 204, r.text);
    assert.equal((await health()).status, 503);
    assert.equal((await sealStatus()).sealed, true);
  });
});

/** The value of one Prometheus sample line, or null when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[k!] = v!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v) && Object.keys(have).length === Object.keys(labels).length) return Number(m[3]);
  }
  return null;
}

describe('sys/metrics?format=prometheus', () => {
  let s: InProcessServer;
  const DATA_ROUTE = 'secret/data/:path+';
  const scrape = async () => {
    const r = await s.api('GET', 'sys/metrics?format=prometheus');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return r.text;
  };

  before(async () => {
    s = await startTestServer();
  });

  it('needs a token: 403 without one, or with an unknown one', async () => {
    assertApiError(await s.api('GET', 'sys/metrics?format=prometheus', { token: null }), 403, /permission denied/);
    assertApiError(await s.api('GET', 'sys/metrics?format=prometheus', { token: 'aegis.unknown' }), 403, /permission denied/);
  });

  it('counts requests by route pattern and status, exactly', async () => {
    const before = await scrape();
    const ok0 = sample(before, 'aegis_requests_total', { route: DATA_ROUTE, status: '200' }) ?? 0;
    const nf0 = sample(before, 'aegis_requests_total', { route: DATA_ROUTE, status: '404' }) ?? 0;
    const denied0 = sample(before, 'aegis_requests_total', { route: DATA_ROUTE, status: '403' }) ?? 0;
    const bad0 = sample(before, 'aegis_requests_total', { route: 'unmatched', status: '400' }) ?? 0;
    assert.equal((await s.api('POST', 'secret/data/m', { body: { data: { a: '1' } } })).status, 200);
    assert.equal((await s.api('GET', 'secret/data/m')).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await s.api('GET', `secret/data/missing-${i}`)).status, 404);
    assert.equal((await s.api('GET', 'secret/data/m', { token: null })).status, 403);
    assert.equal((await rawRequest(s.address, '/v1/secret/data/%2e%2e/m', { headers: { 'x-vault-token': s.rootToken } })).status, 400);

    const text = await scrape();
    assert.equal(sample(text, 'aegis_requests_total', { route: DATA_ROUTE, status: '200' }), ok0 + 2);
    assert.equal(sample(text, 'aegis_requests_total', { route: DATA_ROUTE, status: '404' }), nf0 + 3);
    assert.equal(sample(text, 'aegis_requests_total', { route: DATA_ROUTE, status: '403' }), denied0 + 1);
    assert.equal(sample(text, 'aegis_requests_total', { route: 'unmatched', status: '400' }), bad0 + 1);
    assert.match(text, /# TYPE aegis_requests_total counter/);
  });

  it('has a latency histogram by route', async () => {
    const c0 = sample(await scrape(), 'aegis_request_duration_seconds_count', { route: DATA_ROUTE }) ?? 0;
    assert.equal((await s.api('GET', 'secret/data/m')).status, 200);
    assert.equal((await s.api('GET', 'secret/data/none')).status, 404);
    const text = await scrape();
    assert.match(text, /# TYPE aegis_request_duration_seconds histogram/);
    const count = sample(text, 'aegis_request_duration_seconds_count', { route: DATA_ROUTE });
    assert.equal(count, c0 + 2);
    assert.equal(sample(text, 'aegis_request_duration_seconds_bucket', { route: DATA_ROUTE, le: '+Inf' }), count);
    const fast = sample(text, 'aegis_request_duration_seconds_bucket', { route: DATA_ROUTE, le: '0.005' });
    assert.ok(fast !== null && fast <= count!, 'buckets are cumulative');
    assert.ok((sample(text, 'aegis_request_duration_seconds_sum', { route: DATA_ROUTE }) ?? -1) > 0);
  });

  it('reports aegis_sealed 0 while unsealed', async () => {
    const text = await scrape();
    assert.match(text, /# TYPE aegis_sealed gauge/);
    assert.equal(sample(text, 'aegis_sealed'), 0);
  });

  it('counts live tokens in aegis_tokens', async () => {
    const n0 = sample(await scrape(), 'aegis_tokens');
    assert.ok(n0 !== null && n0 >= 1, 'at least the root token');
    const t = await s.api('POST', 'auth/token/create', { body: { policies: ['default'] } });
    assert.equal(t.status, 200, t.text);
    assert.equal(sample(await scrape(), 'aegis_tokens'), n0 + 1);
    assert.equal((await s.api('POST', 'auth/token/revoke-self', { token: t.body.auth.client_token, body: {} })).status, 204);
    assert.equal(sample(await scrape(), 'aegis_tokens'), n0);
  });

  it('counts audit write failures by device in aegis_audit_write_failures_total', { skip: !existsSync('/dev/full') && 'needs /dev/full' }, async () => {
    assert.match(await scrape(), /# TYPE aegis_audit_write_failures_total counter/);
    // One good device keeps requests going; /dev/full fails every write (ENOSPC).
    const good = await s.api('PUT', 'sys/audit/good', { body: { type: 'file', options: { file_path: join(s.dataDir, 'audit.log') } } });
    assert.equal(good.status, 204, good.text);
    const full = await s.api('PUT', 'sys/audit/full', { body: { type: 'file', options: { file_path: '/dev/full' } } });
    assert.equal(full.status, 204, full.text);
    const f0 = sample(await scrape(), 'aegis_audit_write_failures_total', { device: 'full' }) ?? 0;
    assert.ok(f0 > 0);
    assert.equal((await s.api('GET', 'secret/data/m')).status, 200);
    const f1 = sample(await scrape(), 'aegis_audit_write_failures_total', { device: 'full' });
    assert.ok(f1 !== null && f1 > f0, `failures went from ${f0} to ${f1}`);
    assert.equal(sample(await scrape(), 'aegis_audit_write_failures_total', { device: 'good' }), null, 'the good device has no failures');
    assert.equal((await s.api('DELETE', 'sys/audit/full')).status, 204);
  });

  it('the JSON form (no format) lists the same metric families', async () => {
    const r = await s.api('GET', 'sys/metrics');
    assert.equal(r.status, 200, r.text);
    const names = (r.body.data.metrics as { name: string }[]).map((m) => m.name);
    for (const n of ['aegis_requests_total', 'aegis_request_duration_seconds', 'aegis_sealed', 'aegis_audit_write_failures_total', 'aegis_tokens']) assert.ok(names.includes(n), n);
  });
});

describe('logs never contain a token or a secret', () => {
  const SECRET_VALUE = 'S3cr3t-value-that-must-never-be-logged-7f2c';
  const KNOWN_ROOT = 'aegis.known-root-token-for-the-log-test-91ab';
  const KNOWN_CHILD = 'aegis.known-child-token-for-the-log-test-4d0e';
  let captured = '';
  let dataDir = '';
  let server: RunningServer;
  let call: Api;
  let keys: { hex: string[]; b64: string[] } = { hex: [], b64: [] };

  before(async () => {
    dataDir = tempDir('logs');
    const cfg = defaultConfig(dataDir);
    cfg.listener.address = '127.0.0.1:0';
    cfg.listener.tlsDisable = true;
    cfg.storage.synchronous = 'normal';
    cfg.rateLimit = { perSecond: 0, burst: 1 };
    server = await startServer(cfg, createLogger('trace', { write: (line: string) => { captured += line; } }));
    call = api(server.address, KNOWN_ROOT);
  });
  after(() => server?.close());

  it('a server used with known secrets, tokens and error cases logs none of them', async () => {
    // Init and unseal over HTTP: unseal keys and a chosen root token pass through the server.
    const init = await call('POST', 'sys/init', { token: null, body: { secret_shares: 2, secret_threshold: 2, root_token_id: KNOWN_ROOT } });
    assert.equal(init.status, 200, init.text);
    assert.equal(init.body.root_token, KNOWN_ROOT);
    keys = { hex: init.body.keys, b64: init.body.keys_base64 };
    for (const k of keys.hex) assert.equal((await call('POST', 'sys/unseal', { token: null, body: { key: k } })).status, 200);
    assert.equal((await call('GET', 'sys/health', { token: null })).status, 200);

    const child = await call('POST', 'auth/token/create', { body: { id: KNOWN_CHILD, policies: ['default'] } });
    assert.equal(child.status, 200, child.text);
    assert.equal((await call('POST', 'secret/data/log-test', { body: { data: { password: SECRET_VALUE } } })).status, 200);
    assert.equal((await call('GET', 'secret/data/log-test')).body.data.data.password, SECRET_VALUE);
    if (existsSync('/dev/full')) {
      // A failing audit device makes the server log errors while handling requests that carry the secret.
      assert.equal((await call('PUT', 'sys/audit/good', { body: { type: 'file', options: { file_path: join(dataDir, 'audit.log') } } })).status, 204);
      assert.equal((await call('PUT', 'sys/audit/full', { body: { type: 'file', options: { file_path: '/dev/full' } } })).status, 204);
      assert.equal((await call('POST', 'secret/data/log-test', { body: { data: { password: SECRET_VALUE } } })).status, 200);
      assert.equal((await call('GET', 'secret/data/log-test')).status, 200);
    }

    // Errors of every kind, each carrying the secret or a token somewhere.
    const json = { 'content-type': 'application/json' };
    assert.equal((await call('POST', 'secret/data/log-test', { raw: `{"data":{"password":"${SECRET_VALUE}"`, headers: json })).status, 400);
    assert.equal((await call('POST', 'secret/data/log-test', { raw: `{"__proto__":{"password":"${SECRET_VALUE}"}}`, headers: json })).status, 400);
    assert.equal((await call('POST', 'secret/data/log-test', { raw: SECRET_VALUE, headers: { 'content-type': 'text/plain' } })).status, 415);
    assert.equal((await call('GET', 'secret/data/log-test', { token: KNOWN_CHILD })).status, 403);
    assert.equal((await call('GET', 'secret/data/log-test', { token: null, headers: { authorization: `Bearer ${KNOWN_CHILD}` } })).status, 403);
    assert.equal((await call('GET', `secret/data/log-test`, { token: SECRET_VALUE })).status, 403);
    assert.equal((await call('GET', 'nothing/here')).status, 404);
    assert.equal((await call('GET', `secret/data/${SECRET_VALUE}`)).status, 404);
    assert.equal((await call('POST', 'auth/token/lookup', { body: { token: KNOWN_CHILD } })).status, 200);
    assert.equal((await call('POST', 'auth/token/lookup', { body: { token: SECRET_VALUE } })).status, 400);
    assert.equal((await call('POST', 'sys/unseal', { token: null, body: { key: SECRET_VALUE } })).status, 200);
    assert.equal((await call('GET', 'secret/data/log-test', { headers: { 'x-vault-wrap-ttl': SECRET_VALUE } })).status, 400);

    // Seal and unseal again: the lifecycle logs the most.
    assert.equal((await call('POST', 'sys/seal', { body: {} })).status, 204);
    for (const k of keys.b64) assert.equal((await call('POST', 'sys/unseal', { token: null, body: { key: k } })).status, 200);
    assert.equal((await call('GET', 'secret/data/log-test')).body.data.data.password, SECRET_VALUE);
    await server.close();

    // The capture works: the server did log, as JSON lines.
    const lines = captured.trim().split('\n');
    assert.ok(lines.length >= 4, captured);
    for (const l of lines) JSON.parse(l);
    assert.match(captured, /Aegis listening/);
    assert.match(captured, /Aegis unsealed/);
    assert.match(captured, /Aegis sealed/);
    if (existsSync('/dev/full')) assert.match(captured, /audit device failed to write/);

    for (const [what, value] of [['secret', SECRET_VALUE], ['root token', KNOWN_ROOT], ['child token', KNOWN_CHILD], ...keys.hex.map((k) => ['unseal key (hex)', k]), ...keys.b64.map((k) => ['unseal key (base64)', k])] as [string, string][]) {
      assert.ok(!captured.includes(value), `the logs contain the ${what}`);
    }
    // Not even a recognizable part of the secret.
    assert.ok(!captured.includes('S3cr3t-value'), 'the logs contain part of the secret');
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest, createServer, type Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { before, describe, it } from 'node:test';
import { onCleanup } from '../helpers/cleanup.js';
import { portOf, proxyStatus, startMeshServer, startProxy, within, type MeshServer, type ProxyProc } from '../helpers/mesh-procs.js';

// `aegis proxy --mode http` end to end: real server, two real sidecars, a real HTTP app. The app speaks plain
// HTTP/1.1 to its proxy; the caller speaks HTTP/1.1 or HTTP/2 (prior knowledge) to its local upstream listener;
// between the proxies it is mTLS with ALPN. Method and path rules come from an intention.

const ROOT_TOKEN = 'proxy-http-e2e-root';
const TD = 'spiffe://aegis.local/ns/default/svc';

interface Seen {
  method: string;
  path: string;
  xfcc: string | undefined;
}

let server: MeshServer;
let web: ProxyProc;
let apiProxy: ProxyProc;
const seen: Seen[] = [];

function apiApp(): Promise<Server> {
  const app = createServer((req, res) => {
    seen.push({ method: req.method!, path: req.url!, xfcc: req.headers['x-forwarded-client-cert'] as string | undefined });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ service: 'api', path: req.url })));
  });
  onCleanup(() => new Promise<void>((r) => app.close(() => r())));
  app.listen(0, '127.0.0.1');
  return once(app, 'listening').then(() => app);
}

/** One HTTP/1.1 request to web's local listener for api: status and body. */
function call(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: web.upstreams.api, method, path, headers, timeout: 5_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  server = await startMeshServer(ROOT_TOKEN);
  const app = await apiApp();
  [web, apiProxy] = await Promise.all([
    startProxy(server, 'web', 1, { upstreams: ['api'], mode: 'http' }),
    startProxy(server, 'api', portOf(app), { mode: 'http' }),
  ]);
  await within(10_000, 'web sees a healthy api sidecar', async () => (await proxyStatus(web)).upstreams['default/api'].instances.length === 1);
  await server.api.ok('PUT', 'mesh/intentions/default/web/default/api', { body: { action: 'allow', methods: ['GET'], path_prefix: '/api/' } });
});

describe('aegis proxy --mode http', () => {
  it('an allowed request reaches the app with the caller’s identity in X-Forwarded-Client-Cert (Envoy’s format)', async () => {
    let r = { status: 0, body: '' };
    await within(3_000, 'the intention applies', async () => (r = await call('GET', '/api/items?x=1')).status === 200);
    assert.deepEqual(JSON.parse(r.body), { service: 'api', path: '/api/items?x=1' });
    const last = seen.at(-1)!;
    assert.equal(last.method, 'GET');
    // By = the receiving proxy's identity, URI = the caller's; Hash = SHA-256 of the caller's leaf certificate.
    const m = /^By=([^;]+);Hash=([0-9a-f]{64});URI=([^;]+)$/.exec(last.xfcc ?? '');
    assert.ok(m, `XFCC ${last.xfcc}`);
    assert.equal(m[1], `${TD}/api`);
    assert.equal(m[3], `${TD}/web`);
  });

  it('a client cannot forge X-Forwarded-Client-Cert: the header it sends is replaced', async () => {
    const r = await call('GET', '/api/forged', { 'x-forwarded-client-cert': `By=x;URI=${TD}/admin` });
    assert.equal(r.status, 200);
    assert.doesNotMatch(seen.at(-1)!.xfcc!, /admin/);
    assert.match(seen.at(-1)!.xfcc!, /URI=spiffe:\/\/aegis\.local\/ns\/default\/svc\/web$/);
  });

  it('method and path rules hold: POST and paths outside /api/ get 403 and never reach the app', async () => {
    const before = seen.length;
    const post = await call('POST', '/api/items');
    assert.equal(post.status, 403);
    assert.match(post.body, /RBAC: access denied/);
    assert.equal((await call('GET', '/admin')).status, 403);
    // Path normalization: a traversal out of /api/ is judged by where it lands.
    assert.equal((await call('GET', '/api/%2e%2e/admin')).status, 403);
    assert.equal(seen.length, before);
    await within(3_000, 'denials are counted on api’s admin port', async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${apiProxy.admin}/metrics`)).text();
      return /^aegis_proxy_decisions_total\{kind="request",result="deny"\} [3-9]/m.test(metrics);
    });
  });

  it('HTTP/2 from the app (prior knowledge) crosses the mesh as h2 and is decided per request', async () => {
    const session = h2connect(`http://127.0.0.1:${web.upstreams.api}`);
    session.on('error', () => undefined);
    onCleanup(() => session.destroy());
    const get = (method: string, path: string) => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const s = session.request({ ':method': method, ':path': path });
      let body = '';
      let status = 0;
      s.on('response', (h) => { status = Number(h[':status']); });
      s.on('data', (d) => { body += d; });
      s.on('end', () => resolve({ status, body }));
      s.on('error', reject);
      s.setTimeout(5_000, () => s.close());
      s.end();
    });
    const [a, b, c] = await Promise.all([get('GET', '/api/one'), get('GET', '/api/two'), get('DELETE', '/api/one')]);
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(b.body).path, '/api/two');
    assert.equal(c.status, 403);
    session.close();
  });

  it('request latency is exported as a histogram on the admin port', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${apiProxy.admin}/metrics`)).text();
    const count = /^aegis_proxy_request_duration_seconds_count\{method="GET",code_class="2xx"\} (\d+)/m.exec(metrics);
    assert.ok(count && Number(count[1]) >= 4, metrics.split('\n').filter((l) => l.includes('request_duration')).join('\n'));
  });

  it('after a forced renewal (POST /renew on the admin port) XFCC carries the hash of the new leaf', async () => {
    const hashOf = () => /Hash=([0-9a-f]{64})/.exec(seen.at(-1)!.xfcc!)![1];
    await call('GET', '/api/before-renewal');
    const before = hashOf();
    const res = await fetch(`http://127.0.0.1:${web.admin}/renew`, { method: 'POST' });
    assert.equal(res.status, 200);
    const renewed = await res.json() as { serial: string; expires_at: string };
    assert.ok(Date.parse(renewed.expires_at) > Date.now());
    // Keep-alive is off in `call`, so each request is a new handshake with the proxy's current SVID.
    await call('GET', '/api/after-renewal');
    assert.notEqual(hashOf(), before);
    await call('GET', '/api/again');
    assert.equal(seen.at(-1)!.xfcc, seen.at(-2)!.xfcc);
  });

  it('a mesh policy on a request header: GET /admin passes only with x-role: admin', async () => {
    const policy = `@id("admins")
permit (principal == Aegis::Service::"default/web", action == Aegis::Action::"connect", resource == Aegis::Service::"default/api")
when { context has path && context.path == "/admin" && context has headers && context.headers.hasTag("x-role") && context.headers.getTag("x-role") == "admin" };`;
    await server.api.ok('PUT', 'mesh/policies/web-admins', { body: { policy } });
    await within(3_000, 'the header rule applies', async () => (await call('GET', '/admin', { 'x-role': 'admin' })).status === 200);
    assert.equal(seen.at(-1)!.path, '/admin');
    assert.equal((await call('GET', '/admin', { 'x-role': 'viewer' })).status, 403);
    assert.equal((await call('GET', '/admin')).status, 403);
  });
});

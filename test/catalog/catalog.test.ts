import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { promises as dnsPromises } from 'node:dns';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Core, SqliteStorage } from '../../src/core/index.js';
import { KeyFileUnseal } from '../../src/core/seal/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { request } from '../helpers/core.js';
import { startTestServer, type ApiResult } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { until } from '../helpers/wait.js';

// The catalog over real HTTP: registration, validation, health filtering, blocking queries, SSE, policy.
const srv = await startTestServer();

function status(r: ApiResult, want: number, what: string): any {
  assert.equal(r.status, want, `${what}: ${r.status} ${r.text}`);
  return r.body;
}

const register = (ns: string, service: string, id: string, body: Record<string, unknown>, token?: string) =>
  srv.api('PUT', `catalog/service/${ns}/${service}/${id}`, { body, token });

async function httpServer(code: () => number): Promise<{ url: string; server: Server }> {
  const server = createServer((_req, res) => { res.writeHead(code()); res.end('state'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onCleanup(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/health`, server };
}

describe('catalog: register, list, deregister', () => {
  it('an instance registers with address, port, tags and meta; services and instances list it', async () => {
    const body = status(await register('default', 'web', 'web-1', { address: '10.0.0.1', port: 8080, tags: ['v1', 'blue'], meta: { version: '1.2' } }), 200, 'register');
    assert.equal(body.id, 'web-1');
    assert.ok(body.modify_index > 0);
    status(await register('default', 'web', 'web-2', { address: '10.0.0.2', port: 8080, tags: ['v2'] }), 200, 'register 2');
    const services = status(await srv.api('GET', 'catalog/services'), 200, 'services');
    assert.deepEqual(services.web, ['blue', 'v1', 'v2']);
    const list = await srv.api('GET', 'catalog/service/default/web');
    assert.deepEqual(status(list, 200, 'instances').map((i: any) => i.id), ['web-1', 'web-2']);
    assert.match(list.headers.get('x-aegis-index')!, /^\d+$/);
    assert.deepEqual(status(await srv.api('GET', 'catalog/service/default/web?tag=v2'), 200, 'tag').map((i: any) => i.id), ['web-2']);
    status(await srv.api('DELETE', 'catalog/service/default/web/web-2'), 204, 'deregister');
    assert.deepEqual(status(await srv.api('GET', 'catalog/service/default/web'), 200, 'after').map((i: any) => i.id), ['web-1']);
    status(await srv.api('DELETE', 'catalog/service/default/web/web-2'), 404, 'deregister twice');
  });

  it('a sidecar registers as connect-proxy with the service it fronts and its upstreams', async () => {
    const body = status(await register('prod', 'web-sidecar', 'web-sidecar-1', {
      address: '10.0.1.1', port: 21000, kind: 'connect-proxy',
      proxy: { destination_service: 'web', upstreams: [{ destination_name: 'db', local_bind_port: 5432 }] },
    }), 200, 'sidecar');
    assert.equal(body.kind, 'connect-proxy');
    assert.deepEqual(body.proxy, { destination_service: 'web', upstreams: [{ destination_name: 'db', destination_namespace: 'prod', local_bind_port: 5432 }] });
    assert.deepEqual(status(await srv.api('GET', 'catalog/namespaces'), 200, 'namespaces').includes('prod'), true);
  });

  it('bad input is a 400 with the reason and registers nothing', async () => {
    const cases: [string, string, string, Record<string, unknown>, RegExp][] = [
      ['default', 'Web', 'w', { address: '10.0.0.1', port: 80 }, /service "Web" is not a valid name/],
      ['default', 'web_x', 'w', { address: '10.0.0.1', port: 80 }, /not a valid name/],
      ['Prod', 'web', 'w', { address: '10.0.0.1', port: 80 }, /namespace "Prod"/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 70000 }, /port must be a whole number from 0 to 65535/],
      ['default', 'bad', 'w', { address: 'not an address!', port: 80 }, /address/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, tags: Array.from({ length: 65 }, (_, i) => `t${i}`) }, /at most 64/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { http: 'http://127.0.0.1/', interval: '0s' } }, /interval must be between 1s/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { tcp: '127.0.0.1:80', interval: '10s', timeout: '1h' } }, /timeout must be between/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { tcp: '127.0.0.1:80', interval: '10s', timeout: '20s' } }, /must not be longer than interval/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { http: 'ftp://x/', interval: '10s' } }, /http:\/\/ or https:\/\//],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { interval: '10s' } }, /exactly one of http/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, kind: 'mesh' }, /kind/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { http: 'http://169.254.169.254/latest/meta-data/', interval: '10s' } }, /may only probe its own instance/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, check: { tcp: '10.0.0.2:22', interval: '10s' } }, /may only probe its own instance/],
      ['default', 'bad', 'w', { address: '10.0.0.1', port: 80, kind: 'connect-proxy' }, /destination_service/],
    ];
    for (const [ns, svc, id, body, msg] of cases) {
      const r = await register(ns, svc, id, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.body.errors.join(' '), msg);
    }
    assert.equal(status(await srv.api('GET', 'catalog/services'), 200, 'services').bad, undefined, 'nothing half-registered');
  });

  it('an instance id held by another service is a conflict', async () => {
    status(await register('default', 'api', 'shared-1', { address: '10.0.0.9', port: 1 }), 200, 'first');
    const r = await register('default', 'other', 'shared-1', { address: '10.0.0.9', port: 1 });
    assert.equal(r.status, 409, r.text);
    assert.match(r.body.errors[0], /already registered for service "api"/);
  });
});

describe('health', () => {
  it('an instance without checks passes; a TTL check is critical until reported, then follows the reports', async () => {
    status(await register('default', 'ttl', 'ttl-1', { address: '10.0.2.1', port: 1, check: { ttl: '30s' } }), 200, 'register');
    status(await register('default', 'ttl', 'ttl-2', { address: '10.0.2.2', port: 1 }), 200, 'register');
    let passing = status(await srv.api('GET', 'health/service/default/ttl?passing'), 200, 'passing');
    assert.deepEqual(passing.map((e: any) => e.service.id), ['ttl-2']);
    status(await srv.api('PUT', 'health/check/default/service:ttl-1', { body: { status: 'pass', output: 'all good' } }), 204, 'report');
    passing = status(await srv.api('GET', 'health/service/default/ttl?passing=true'), 200, 'passing');
    assert.deepEqual(passing.map((e: any) => e.service.id), ['ttl-1', 'ttl-2']);
    const all = status(await srv.api('GET', 'health/service/default/ttl'), 200, 'all');
    assert.equal(all[0].checks[0].output, 'all good');
    // A report without a status change updates the output that readers see (answers are cached per change).
    status(await srv.api('PUT', 'health/check/default/service:ttl-1', { body: { status: 'pass', output: 'still good' } }), 204, 'report again');
    assert.equal(status(await srv.api('GET', 'health/service/default/ttl'), 200, 'all')[0].checks[0].output, 'still good');
    status(await srv.api('PUT', 'health/check/default/service:ttl-1', { body: { status: 'fail' } }), 204, 'fail');
    assert.deepEqual(status(await srv.api('GET', 'health/service/default/ttl?passing'), 200, '').map((e: any) => e.service.id), ['ttl-2']);
    status(await srv.api('PUT', 'health/check/default/nope', { body: { status: 'pass' } }), 404, 'unknown check');
    status(await srv.api('PUT', 'health/check/default/service:ttl-1', { body: { status: 'great' } }), 400, 'bad status');
    // An instance whose check status changed since it registered deregisters, and its check goes with it.
    status(await srv.api('DELETE', 'catalog/service/default/ttl/ttl-1'), 204, 'deregister with checks');
    status(await srv.api('PUT', 'health/check/default/service:ttl-1', { body: { status: 'pass' } }), 404, 'check gone');
  });

  it('an instance critical longer than deregister_critical_after is deregistered', async () => {
    status(await register('default', 'dca', 'dca-1', { address: '10.0.5.1', port: 1, check: { ttl: '1s', deregister_critical_after: '1s' } }), 200, 'register');
    status(await srv.api('PUT', 'health/check/default/service:dca-1', { body: { status: 'pass' } }), 204, 'pass');
    // No more reports: the TTL runs out (critical), and a second later the instance is gone.
    await until('deregistered', async () => (await srv.api('GET', 'catalog/service/default/dca')).body.length === 0, 8000);
    status(await srv.api('GET', 'catalog/service/default/dca/dca-1'), 404, 'gone');
  });

  it('an HTTP check run by the server turns the instance passing, then critical when the endpoint fails', async () => {
    let code = 200;
    const { url } = await httpServer(() => code);
    status(await register('default', 'httpchk', 'h-1', { address: '127.0.0.1', port: 1, check: { http: url, interval: '1s', timeout: '500ms' } }), 200, 'register');
    await until('passing', async () => (await srv.api('GET', 'health/service/default/httpchk?passing')).body.length === 1);
    code = 500;
    await until('critical', async () => (await srv.api('GET', 'health/service/default/httpchk?passing')).body.length === 0, 5000);
    const e = status(await srv.api('GET', 'health/service/default/httpchk'), 200, 'entry')[0];
    assert.equal(e.checks[0].status, 'critical');
    assert.match(e.checks[0].output, /500/);
  });
});

describe('blocking queries and streams', () => {
  it('a blocking query returns when its service changes, not when another one does, and after wait otherwise', async () => {
    status(await register('default', 'blk-a', 'a-1', { address: '10.0.3.1', port: 1 }), 200, 'a');
    status(await register('default', 'blk-b', 'b-1', { address: '10.0.3.2', port: 1 }), 200, 'b');
    const first = await srv.api('GET', 'health/service/default/blk-a');
    const index = Number(first.headers.get('x-aegis-index'));
    const t0 = Date.now();
    const waiting = srv.api('GET', `health/service/default/blk-a?index=${index}&wait=10s`);
    await sleep(150);
    status(await register('default', 'blk-b', 'b-2', { address: '10.0.3.3', port: 1 }), 200, 'unrelated change');
    await sleep(150);
    status(await register('default', 'blk-a', 'a-2', { address: '10.0.3.4', port: 1 }), 200, 'related change');
    const r = await waiting;
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 280 && elapsed < 3000, `returned after ${elapsed} ms: not woken by blk-b, woken by blk-a`);
    assert.ok(Number(r.headers.get('x-aegis-index')) > index);
    assert.equal(r.body.length, 2);

    const t1 = Date.now();
    const same = await srv.api('GET', `health/service/default/blk-a?index=${r.headers.get('x-aegis-index')}&wait=1s`);
    assert.ok(Date.now() - t1 >= 950, 'waited the full wait');
    assert.equal(same.headers.get('x-aegis-index'), r.headers.get('x-aegis-index'));
    const stale = await srv.api('GET', `health/service/default/blk-a?index=${index}&wait=10s`);
    assert.equal(stale.body.length, 2, 'an old index answers at once');
  });

  it('the SSE stream sends the current state, then each change', async () => {
    status(await register('default', 'sse', 'sse-1', { address: '10.0.4.1', port: 1 }), 200, 'register');
    const ac = new AbortController();
    const res = await fetch(`${srv.address}/v1/catalog/watch/default/sse`, { headers: { 'x-vault-token': srv.rootToken }, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /text\/event-stream/);
    const reader = res.body!.getReader();
    const events: any[] = [];
    let buf = '';
    const next = async () => {
      while (true) {
        const i = buf.indexOf('\n\n');
        if (i >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (chunk.startsWith('data: ')) return JSON.parse(chunk.slice(6));
          continue;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        buf += Buffer.from(value).toString();
      }
    };
    events.push(await next());
    assert.deepEqual(events[0].instances.map((e: any) => e.service.id), ['sse-1']);
    status(await register('default', 'sse', 'sse-2', { address: '10.0.4.2', port: 1 }), 200, 'register 2');
    events.push(await next());
    assert.deepEqual(events[1].instances.map((e: any) => e.service.id), ['sse-1', 'sse-2']);
    assert.ok(events[1].index > events[0].index);
    ac.abort();
  });
});

describe('DNS through the running server', () => {
  it('<service>.service.<ns>.aegis answers the passing instances registered over HTTP; unknown names are NXDOMAIN', async () => {
    assert.ok(srv.dns, 'the test server runs the DNS interface');
    status(await register('shop', 'cart', 'cart-1', { address: '10.5.0.1', port: 7000 }), 200, 'passing instance');
    status(await register('shop', 'cart', 'cart-2', { address: '10.5.0.2', port: 7000, check: { ttl: '1m' } }), 200, 'critical instance');
    const resolver = new dnsPromises.Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`127.0.0.1:${srv.dns!.port}`]);
    assert.deepEqual(await resolver.resolve4('cart.service.shop.aegis'), ['10.5.0.1']);
    const srvRecords = await resolver.resolveSrv('cart.service.shop.aegis');
    assert.deepEqual(srvRecords.map((r) => r.port), [7000]);
    status(await srv.api('PUT', 'health/check/shop/service:cart-2', { body: { status: 'pass' } }), 204, 'pass');
    assert.deepEqual((await resolver.resolve4('cart.service.shop.aegis')).sort(), ['10.5.0.1', '10.5.0.2']);
    await assert.rejects(resolver.resolve4('nothing.service.shop.aegis'), (e: NodeJS.ErrnoException) => e.code === 'ENOTFOUND');
  });
});

describe('authorization', () => {
  it('a token may be allowed to register one service and read others', async () => {
    const policy = `@id("register-web")
permit (principal, action in [Aegis::Action::"create", Aegis::Action::"update", Aegis::Action::"delete"], resource in Aegis::Path::"catalog/service/prod/web/");
@id("read-catalog")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"catalog/service/");
@id("read-health")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"health/service/");
`;
    status(await srv.api('PUT', 'sys/policies/cedar/web-registrar', { body: { policy } }), 204, 'policy');
    const token = status(await srv.api('POST', 'auth/token/create', { body: { policies: ['web-registrar'] } }), 200, 'token').auth.client_token;
    status(await register('prod', 'web', 'web-p1', { address: '10.1.0.1', port: 80 }, token), 200, 'own service');
    status(await register('prod', 'db', 'db-p1', { address: '10.1.0.2', port: 5432 }, token), 403, 'another service');
    status(await register('staging', 'web', 'web-s1', { address: '10.1.0.3', port: 80 }, token), 403, 'another namespace');
    status(await srv.api('GET', 'catalog/service/prod/db', { token }), 200, 'read others');
    status(await srv.api('GET', 'health/service/default/web', { token }), 200, 'read health');
  });
});

describe('persistence', () => {
  it('the catalog and check states survive a restart', async () => {
    const dir = tempDir('catalog-restart');
    KeyFileUnseal.generate(join(dir, 'k'));
    const open = async () => {
      const core = new Core({ storage: new SqliteStorage({ path: join(dir, 'a.db'), synchronous: 'normal' }), logger: createLogger('silent'), autoUnseal: new KeyFileUnseal(join(dir, 'k')) });
      await core.start();
      return core;
    };
    const a = await open();
    const root = (await a.initialize(1, 1)).rootToken;
    const call = (core: Core, op: 'read' | 'update', path: string, data = {}) => core.handle(request(op, path, data, root));
    assert.equal((await call(a, 'update', 'catalog/service/default/keep/keep-1', { address: '10.9.0.1', port: 9, check: { ttl: '1h' } })).status, 200);
    assert.equal((await call(a, 'update', 'health/check/default/service:keep-1', { status: 'pass', output: 'ok' })).status, 204);
    await a.stop();
    const b = await open();
    onCleanup(() => b.stop());
    const r = await call(b, 'read', 'health/service/default/keep', { passing: true });
    const body = JSON.parse(String(r.response!.raw!.body));
    assert.deepEqual(body.map((e: any) => [e.service.id, e.checks[0].status]), [['keep-1', 'passing']]);
  });
});

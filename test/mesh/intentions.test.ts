import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type ApiResult } from '../helpers/server.js';

// Intentions and mesh policies over real HTTP: decisions, precedence, wildcards, HTTP conditions, raw Cedar,
// validation, cache invalidation, blocking queries and authorization of the routes themselves.
const srv = await startTestServer();

function status(r: ApiResult, want: number, what: string): any {
  assert.equal(r.status, want, `${what}: ${r.status} ${r.text}`);
  return r.body;
}

const put = (src: string, dst: string, body: Record<string, unknown>, token?: string) => srv.api('PUT', `mesh/intentions/${src}/${dst}`, { body, token });
const del = (src: string, dst: string) => srv.api('DELETE', `mesh/intentions/${src}/${dst}`);

async function check(source: string, destination: string, extra: Record<string, string> = {}): Promise<{ allowed: boolean; reason: string; rules: string[] }> {
  const q = new URLSearchParams({ source, destination, ...extra });
  return status(await srv.api('GET', `mesh/intentions/check?${q}`), 200, `check ${source} -> ${destination}`).data;
}

describe('intentions: decisions', () => {
  it('default deny: with no intention a connection is denied, and the reason says nothing permits it', async () => {
    const d = await check('default/web', 'default/api');
    assert.equal(d.allowed, false);
    assert.deepEqual(d.rules, []);
    assert.match(d.reason, /no intention or mesh policy permits a connection from default\/web to default\/api \(default deny\)/);
  });

  it('an allow intention permits the connection and the decision names it; the intention is stored as Cedar', async () => {
    const body = status(await put('default/web', 'default/api', { action: 'allow', description: 'web calls api' }), 200, 'put');
    assert.equal(body.data.id, 'intention:default/web->default/api');
    assert.match(body.data.cedar, /permit\s*\(\s*principal == Aegis::Service::"default\/web",\s*action == Aegis::Action::"connect",\s*resource == Aegis::Service::"default\/api"\s*\)/);
    const d = await check('web', 'api');
    assert.equal(d.allowed, true);
    assert.deepEqual(d.rules, ['intention:default/web->default/api']);
    assert.equal(d.reason, 'allowed by intention:default/web->default/api');
    // Direction matters: api may not call web.
    assert.equal((await check('api', 'web')).allowed, false);
    const got = status(await srv.api('GET', 'mesh/intentions/default/web/default/api'), 200, 'get').data;
    assert.equal(got.description, 'web calls api');
    assert.equal(got.action, 'allow');
  });

  it('deny overrides allow: a deny for one source beats an allow for every source, and names the deny', async () => {
    status(await put('*/*', 'default/billing', { action: 'allow' }), 200, 'allow all');
    status(await put('default/evil', 'default/billing', { action: 'deny' }), 200, 'deny evil');
    const evil = await check('default/evil', 'default/billing');
    assert.equal(evil.allowed, false);
    assert.deepEqual(evil.rules, ['intention:default/evil->default/billing']);
    assert.match(evil.reason, /forbidden by intention:default\/evil->default\/billing/);
    const web = await check('default/web', 'default/billing');
    assert.equal(web.allowed, true);
    assert.deepEqual(web.rules, ['intention:*->default/billing']);
    assert.equal((await check('prod/anything', 'default/billing')).allowed, true);
  });

  it('a namespace wildcard covers every service of that namespace and no other', async () => {
    status(await put('prod/*', 'prod/db', { action: 'allow' }), 200, 'allow prod/*');
    assert.equal((await check('prod/orders', 'prod/db')).allowed, true);
    assert.deepEqual((await check('prod/orders', 'prod/db')).rules, ['intention:prod/*->prod/db']);
    assert.equal((await check('staging/orders', 'prod/db')).allowed, false);
    // A wildcard destination too.
    status(await put('ops/monitor', 'prod/*', { action: 'allow' }), 200, 'allow -> prod/*');
    assert.equal((await check('ops/monitor', 'prod/db')).allowed, true);
    assert.equal((await check('ops/monitor', 'staging/db')).allowed, false);
  });

  it('methods and path prefix limit an allow to those HTTP requests; a plain connection is not opened by it', async () => {
    status(await put('default/web', 'default/users', { action: 'allow', methods: ['get', 'HEAD'], path_prefix: '/v1/' }), 200, 'l7 allow');
    assert.equal((await check('web', 'users', { method: 'GET', path: '/v1/users/7' })).allowed, true);
    assert.equal((await check('web', 'users', { method: 'HEAD', path: '/v1/' })).allowed, true);
    assert.equal((await check('web', 'users', { method: 'POST', path: '/v1/users' })).allowed, false);
    assert.equal((await check('web', 'users', { method: 'GET', path: '/admin' })).allowed, false);
    assert.equal((await check('web', 'users')).allowed, false, 'a TCP connection has no method: the L7 allow does not apply');
    // A path prefix with Cedar's wildcard character is literal, not a pattern.
    status(await put('default/web', 'default/files', { action: 'allow', path_prefix: '/a*b/' }), 200, 'literal star');
    assert.equal((await check('web', 'files', { method: 'GET', path: '/a*b/x' })).allowed, true);
    assert.equal((await check('web', 'files', { method: 'GET', path: '/aXb/x' })).allowed, false);
    // A deny limited to DELETE forbids only that.
    status(await put('default/web', 'default/users', { action: 'allow' }), 200, 'replace with L4 allow');
    status(await put('default/*', 'default/users', { action: 'deny', methods: 'DELETE' }), 200, 'deny DELETE');
    assert.equal((await check('web', 'users', { method: 'GET', path: '/x' })).allowed, true);
    const d = await check('web', 'users', { method: 'DELETE', path: '/x' });
    assert.equal(d.allowed, false);
    assert.deepEqual(d.rules, ['intention:default/*->default/users']);
  });

  it('list filters by source and destination; delete removes an intention and its effect', async () => {
    status(await put('default/lister', 'default/target', { action: 'allow' }), 200, 'put');
    const all = status(await srv.api('GET', 'mesh/intentions'), 200, 'list').data;
    assert.ok(all.intentions.length >= 5);
    const bySource = status(await srv.api('GET', 'mesh/intentions?source=lister'), 200, 'by source').data;
    assert.deepEqual(bySource.keys, ['intention:default/lister->default/target']);
    const byDest = status(await srv.api('GET', 'mesh/intentions?destination=default/billing'), 200, 'by destination').data;
    assert.deepEqual(byDest.keys.sort(), ['intention:*->default/billing', 'intention:default/evil->default/billing']);
    status(await srv.api('LIST', 'mesh/intentions'), 200, 'LIST verb');
    assert.equal((await check('lister', 'target')).allowed, true);
    status(await del('default/lister', 'default/target'), 204, 'delete');
    assert.equal((await check('lister', 'target')).allowed, false, 'cached allow dropped on delete');
    status(await del('default/lister', 'default/target'), 404, 'delete twice');
    status(await srv.api('GET', 'mesh/intentions/default/lister/default/target'), 404, 'get deleted');
  });

  it('a decision cached as deny becomes allow on the very next check after an intention is written, and back', async () => {
    assert.equal((await check('cache/a', 'cache/b')).allowed, false);
    assert.equal((await check('cache/a', 'cache/b')).allowed, false);
    status(await put('cache/a', 'cache/b', { action: 'allow' }), 200, 'allow');
    assert.equal((await check('cache/a', 'cache/b')).allowed, true);
    status(await put('cache/a', 'cache/b', { action: 'deny' }), 200, 'flip to deny');
    assert.equal((await check('cache/a', 'cache/b')).allowed, false);
  });
});

describe('mesh policies: raw Cedar', () => {
  const policy = `@id("metrics")
permit (principal in Aegis::Namespace::"ops", action, resource)
when { context has path && context.path like "/metrics*" };`;

  it('a raw document is validated, stored, listed, decides, names its rule, and stops deciding once deleted', async () => {
    const body = status(await srv.api('PUT', 'mesh/policies/scrape', { body: { policy } }), 200, 'put policy').data;
    assert.deepEqual(body.rules, ['scrape/metrics']);
    assert.deepEqual(status(await srv.api('LIST', 'mesh/policies'), 200, 'list').data.keys, ['scrape']);
    assert.equal(status(await srv.api('GET', 'mesh/policies/scrape'), 200, 'get').data.policy, policy);
    const d = await check('ops/prometheus', 'default/api', { method: 'GET', path: '/metrics' });
    assert.equal(d.allowed, true);
    assert.deepEqual(d.rules, ['scrape/metrics']);
    assert.equal((await check('ops/prometheus', 'default/api', { method: 'GET', path: '/secret' })).allowed, false);
    // Raw forbids win over intentions, as intentions' denies do.
    status(await put('ops/prometheus', 'default/vault', { action: 'allow' }), 200, 'allow');
    status(await srv.api('PUT', 'mesh/policies/lockdown', { body: { policy: '@id("no-vault") forbid (principal, action, resource == Aegis::Service::"default/vault");' } }), 200, 'forbid');
    const v = await check('ops/prometheus', 'default/vault');
    assert.equal(v.allowed, false);
    assert.deepEqual(v.rules, ['lockdown/no-vault']);
    status(await srv.api('DELETE', 'mesh/policies/lockdown'), 204, 'delete');
    assert.equal((await check('ops/prometheus', 'default/vault')).allowed, true);
    status(await srv.api('DELETE', 'mesh/policies/scrape'), 204, 'delete');
    assert.equal((await check('ops/prometheus', 'default/api', { method: 'GET', path: '/metrics' })).allowed, false);
  });

  it('mesh documents are not token-scoped: they never grant API access, and API documents still validate', async () => {
    status(await srv.api('PUT', 'mesh/policies/everything', { body: { policy: 'permit (principal, action, resource);' } }), 200, 'put');
    const token = status(await srv.api('POST', 'auth/token/create', { body: { policies: ['everything'], no_default_policy: true } }), 200, 'token').auth.client_token;
    status(await srv.api('GET', 'mesh/intentions', { token }), 403, 'a mesh document named like a token policy grants nothing');
    status(await srv.api('DELETE', 'mesh/policies/everything'), 204, 'delete');
    // The schema grew Service and connect; an API statement with an unconstrained action and path conditions still validates.
    status(await srv.api('PUT', 'sys/policies/cedar/paths', { body: { policy: 'permit (principal, action, resource) when { resource.path like "secret/*" && context.client_ip.isLoopback() };' } }), 204, 'api policy');
  });
});

describe('bad input is a 400 with a clear message, and nothing is written', () => {
  const cases: [string, string, string, unknown, RegExp][] = [
    ['an upper-case service name', 'PUT', 'mesh/intentions/default/Web/default/api', { action: 'allow' }, /source name "Web" is not a valid name/],
    ['a name wildcard across namespaces', 'PUT', 'mesh/intentions/*/web/default/api', { action: 'allow' }, /wildcard namespace needs a wildcard name/],
    ['an unknown action', 'PUT', 'mesh/intentions/default/web/default/api', { action: 'permit' }, /action "permit": use "allow" or "deny"/],
    ['a missing action', 'PUT', 'mesh/intentions/default/web/default/api', {}, /action is required: "allow" or "deny"/],
    ['a method that is not an HTTP token', 'PUT', 'mesh/intentions/default/web/default/api', { action: 'allow', methods: ['GET', 'BAD METHOD'] }, /method "BAD METHOD" is not an HTTP method/],
    ['a path prefix without a leading slash', 'PUT', 'mesh/intentions/default/web/default/api', { action: 'allow', path_prefix: 'v1/' }, /path_prefix "v1\/" must start with "\/"/],
    ['a Cedar syntax error', 'PUT', 'mesh/policies/broken', { policy: 'permit (principal, action, resource' }, /mesh policy broken does not parse/],
    ['an attribute not in the schema', 'PUT', 'mesh/policies/broken', { policy: 'permit (principal, action, resource) when { principal.team == "x" };' }, /does not validate against the Aegis schema: .*team/],
    ['an optional context field read without has', 'PUT', 'mesh/policies/broken', { policy: 'permit (principal, action, resource) when { context.method == "GET" };' }, /does not validate against the Aegis schema: .*optional attribute `method`/],
    ['an API action in a mesh document', 'PUT', 'mesh/policies/broken', { policy: 'permit (principal, action == Aegis::Action::"read", resource);' }, /govern only Aegis::Action::"connect"/],
    ['a statement that can never apply to a connection', 'PUT', 'mesh/policies/broken', { policy: 'permit (principal is Aegis::Token, action, resource);' }, /can never apply to a connection/],
    ['a policy name with a slash-free bad character', 'PUT', 'mesh/policies/bad!name', { policy: 'permit (principal, action, resource);' }, /policy name "bad!name"/],
    ['an empty policy', 'PUT', 'mesh/policies/broken', { policy: '' }, /policy is required/],
    ['a check with a wildcard', 'GET', 'mesh/intentions/check?source=*&destination=default/api', undefined, /source must be one service/],
    ['a config for an invalid service', 'GET', 'mesh/config/default/Bad_Name', undefined, /service "Bad_Name" is not a valid name/],
  ];
  for (const [what, method, path, body, want] of cases) {
    it(`refuses ${what}`, async () => {
      const before = status(await srv.api('GET', 'mesh/intentions'), 200, 'before').data.index;
      const r = await srv.api(method, path, { body });
      assert.equal(r.status, 400, `${method} ${path}: ${r.status} ${r.text}`);
      assert.match(r.body.errors[0], want);
      assert.equal(status(await srv.api('GET', 'mesh/intentions'), 200, 'after').data.index, before, 'nothing was written');
      status(await srv.api('GET', 'mesh/policies/broken'), 404, 'no half-written policy');
    });
  }
});

describe('watching: blocking queries and proxy configuration', () => {
  it('a blocking list wakes on a mesh change with a higher index, and not on an unrelated KV write', async () => {
    const first = await srv.api('GET', 'mesh/intentions');
    const index = Number(first.headers.get('x-aegis-index'));
    assert.ok(index > 0);
    // A KV write during the wait: the query must run to its timeout with the same index.
    const started = Date.now();
    const parked = srv.api('GET', `mesh/intentions?index=${index}&wait=1s`);
    status(await srv.api('PUT', 'secret/data/unrelated', { body: { data: { a: '1' } } }), 200, 'kv write');
    const same = await parked;
    assert.ok(Date.now() - started >= 900, 'woke early on a KV write');
    assert.equal(Number(same.headers.get('x-aegis-index')), index);
    // A mesh change wakes it long before its 30 s wait.
    const t0 = Date.now();
    const waking = srv.api('GET', `mesh/intentions?index=${index}&wait=30s`);
    status(await put('watch/a', 'watch/b', { action: 'allow' }), 200, 'put');
    const woke = await waking;
    assert.ok(Date.now() - t0 < 10_000);
    assert.ok(Number(woke.headers.get('x-aegis-index')) > index);
    assert.ok(woke.body.data.keys.includes('intention:watch/a->watch/b'));
  });

  it('a proxy\'s config holds the intentions and statements that concern its service, and its blocking query wakes on a change', async () => {
    status(await srv.api('PUT', 'mesh/policies/cfg', { body: { policy: '@id("to-shop") permit (principal, action, resource == Aegis::Service::"shop/cart");\n@id("elsewhere") permit (principal, action, resource == Aegis::Service::"shop/other");' } }), 200, 'policy');
    status(await put('shop/web', 'shop/cart', { action: 'allow' }), 200, 'intention');
    const cfg = await srv.api('GET', 'mesh/config/shop/cart');
    const data = status(cfg, 200, 'config').data;
    const ids = data.statements.map((s: any) => s.id);
    assert.ok(ids.includes('cfg/to-shop'));
    assert.ok(ids.includes('intention:shop/web->shop/cart'));
    assert.ok(!ids.includes('cfg/elsewhere'), 'a statement about another service is left out');
    assert.deepEqual(data.intentions.map((i: any) => i.source), ['shop/web']);
    assert.ok(data.statements.every((s: any) => typeof s.cedar === 'string' && s.cedar.includes('connect')));
    const index = Number(cfg.headers.get('x-aegis-index'));
    const waking = srv.api('GET', `mesh/config/shop/cart?index=${index}&wait=30s`);
    status(await put('shop/admin', 'shop/cart', { action: 'deny' }), 200, 'deny');
    const next = status(await waking, 200, 'woken').data;
    assert.ok(next.index > index);
    assert.ok(next.statements.some((s: any) => s.id === 'intention:shop/admin->shop/cart' && s.effect === 'forbid'));
  });
});

describe('the mesh routes are authorized by path', () => {
  it('a token whose policy grants only the check may check and may not write intentions', async () => {
    status(await srv.api('PUT', 'sys/policies/cedar/mesh-checker', {
      body: { policy: 'permit (principal, action == Aegis::Action::"read", resource == Aegis::Path::"mesh/intentions/check");' },
    }), 204, 'api policy');
    const token = status(await srv.api('POST', 'auth/token/create', { body: { policies: ['mesh-checker'], no_default_policy: true } }), 200, 'token').auth.client_token;
    status(await srv.api('GET', 'mesh/intentions/check?source=web&destination=api', { token }), 200, 'check');
    status(await put('default/web', 'default/x', { action: 'allow' }, token), 403, 'write');
    status(await srv.api('GET', 'mesh/intentions', { token }), 403, 'list');
  });
});

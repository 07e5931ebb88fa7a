import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
// The authorizer first: it loads the policy engine, which sets the V8 flag the Cedar Wasm calls need.
import { headerTags, MeshAuthorizer, usesHeaders } from '../../src/mesh/intentions/authorizer.js';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { LocalPolicy } from '../../src/mesh/proxy/runtime/local-policy.js';
import { makeCore } from '../helpers/core.js';
import { fails, ok } from '../helpers/results.js';

// HTTP request headers in mesh authorization: intentions' header conditions, raw Cedar over `context.headers`,
// validation, the decision cache (kept for header-free sets, bypassed for sets that read headers) and the proxy's
// LocalPolicy. Through the real pipeline of one core.
const t = await makeCore();
const mesh = t.core.mesh.policies;

type Headers = Record<string, string | string[]>;
const put = (src: string, dst: string, body: Record<string, unknown>) => t.call('update', `mesh/intentions/${src}/${dst}`, body);
const index = async () => ok(await t.call('read', 'mesh/intentions'), 'list').index as number;

async function check(source: string, destination: string, http: { method?: string; path?: string; headers?: Headers | string } = {}): Promise<{ allowed: boolean; reason: string; rules: string[] }> {
  return ok(await t.call('read', 'mesh/intentions/check', { source, destination, ...http }), `check ${source} -> ${destination}`);
}
const get = (headers?: Headers) => ({ method: 'GET', path: '/v1/x', ...(headers ? { headers } : {}) });

describe('intentions with header conditions', () => {
  it('exact: allowed only when the header has that value; a missing header is denied; names are case-insensitive', async () => {
    const r = ok(await put('hx/web', 'hx/api', { action: 'allow', headers: [{ name: 'X-Role', exact: 'admin' }] }), 'put');
    assert.deepEqual(r.headers, [{ name: 'x-role', exact: 'admin' }], 'stored with a lowercase name');
    assert.match(r.cedar, /\(context has headers\) && context\.headers\.hasTag\("x-role"\)/);
    assert.match(r.cedar, /context\.headers\.getTag\("x-role"\) == "admin"/);
    assert.equal((await check('hx/web', 'hx/api', get({ 'x-role': 'admin' }))).allowed, true);
    assert.equal((await check('hx/web', 'hx/api', get({ 'X-ROLE': 'admin' }))).allowed, true, 'request names are lowercased');
    assert.equal((await check('hx/web', 'hx/api', get({ 'x-role': 'Admin' }))).allowed, false, 'values are case-sensitive');
    assert.equal((await check('hx/web', 'hx/api', get({ 'x-role': 'admin2' }))).allowed, false);
    assert.equal((await check('hx/web', 'hx/api', get({ 'x-other': 'admin' }))).allowed, false, 'missing header');
    assert.equal((await check('hx/web', 'hx/api', get())).allowed, false, 'an HTTP request with no headers at all');
    // A repeated header is one value joined with ", " (RFC 9110), so an exact match on one of them fails.
    assert.equal((await check('hx/web', 'hx/api', get({ 'x-role': ['admin', 'user'] }))).allowed, false);
    // Shown on read and list.
    assert.deepEqual(ok(await t.call('read', 'mesh/intentions/hx/web/hx/api')).headers, [{ name: 'x-role', exact: 'admin' }]);
    const listed = ok(await t.call('read', 'mesh/intentions', { source: 'hx/web' })).intentions;
    assert.deepEqual(listed[0].headers, [{ name: 'x-role', exact: 'admin' }]);
  });

  it('prefix and present; several conditions must all match; with methods and path_prefix too', async () => {
    ok(await put('hp/web', 'hp/api', {
      action: 'allow',
      methods: ['GET'],
      path_prefix: '/v1/',
      headers: [{ name: 'authorization', prefix: 'Bearer ' }, { name: 'x-trace', present: true }],
    }), 'put');
    const both = { authorization: 'Bearer abc', 'x-trace': '1' };
    assert.equal((await check('hp/web', 'hp/api', get(both))).allowed, true);
    assert.equal((await check('hp/web', 'hp/api', get({ ...both, 'x-trace': '' }))).allowed, true, 'present with an empty value');
    assert.equal((await check('hp/web', 'hp/api', get({ authorization: 'Bearer abc' }))).allowed, false, 'x-trace missing');
    assert.equal((await check('hp/web', 'hp/api', get({ authorization: 'Basic abc', 'x-trace': '1' }))).allowed, false, 'wrong prefix');
    assert.equal((await check('hp/web', 'hp/api', { method: 'POST', path: '/v1/x', headers: both })).allowed, false, 'method');
    assert.equal((await check('hp/web', 'hp/api', { method: 'GET', path: '/v2/x', headers: both })).allowed, false, 'path');
    // A prefix with Cedar's wildcard is literal.
    ok(await put('hp/web', 'hp/files', { action: 'allow', headers: [{ name: 'x-k', prefix: 'a*' }] }), 'put literal');
    assert.equal((await check('hp/web', 'hp/files', get({ 'x-k': 'a*b' }))).allowed, true);
    assert.equal((await check('hp/web', 'hp/files', get({ 'x-k': 'ab' }))).allowed, false);
  });

  it('a deny on a header overrides an allow', async () => {
    ok(await put('hd/web', 'hd/api', { action: 'allow' }), 'allow');
    ok(await put('hd/*', 'hd/api', { action: 'deny', headers: [{ name: 'x-debug', present: true }] }), 'deny');
    assert.equal((await check('hd/web', 'hd/api', get({ 'x-other': '1' }))).allowed, true);
    const d = await check('hd/web', 'hd/api', get({ 'x-debug': '1' }));
    assert.equal(d.allowed, false);
    assert.deepEqual(d.rules, ['intention:hd/*->hd/api']);
    assert.equal((await check('hd/web', 'hd/api')).allowed, true, 'a TCP connection: the header deny does not apply');
  });

  it('an HTTP-scoped intention never allows a plain TCP connection (no method, path or headers)', async () => {
    ok(await put('ht/web', 'ht/api', { action: 'allow', headers: [{ name: 'x-role', present: true }] }), 'put');
    const d = await check('ht/web', 'ht/api');
    assert.equal(d.allowed, false);
    assert.match(d.reason, /default deny/);
    const local = new LocalPolicy('ht/api', 'example.org');
    local.load(mesh.concerning('ht', 'api').statements);
    assert.equal(local.allows('spiffe://example.org/ns/ht/svc/web'), false, 'tcp mode');
    assert.equal(local.allows('spiffe://example.org/ns/ht/svc/web', { method: 'GET', path: '/', headers: { 'x-role': 'a' } }), true, 'http mode');
  });

  it('the check takes headers as JSON text too (a query string), and refuses malformed ones', async () => {
    assert.equal((await check('hx/web', 'hx/api', { method: 'GET', path: '/', headers: '{"x-role":"admin"}' })).allowed, true);
    fails(await t.call('read', 'mesh/intentions/check', { source: 'hx/web', destination: 'hx/api', headers: '{not json' }), 400, /headers must be an object/);
    fails(await t.call('read', 'mesh/intentions/check', { source: 'hx/web', destination: 'hx/api', headers: { 'bad name': 'x' } }), 400, /"bad name" is not a header name/);
    fails(await t.call('read', 'mesh/intentions/check', { source: 'hx/web', destination: 'hx/api', headers: { a: 1 } }), 400, /must be a string or a list of strings/);
  });
});

describe('raw mesh Cedar over context.headers', () => {
  it('validates and decides', async () => {
    const policy = `@id("admins")
permit (principal in Aegis::Namespace::"hr", action, resource == Aegis::Service::"hr/api")
when { context has headers && context.headers.hasTag("x-role") && context.headers.getTag("x-role") == "admin" };
@id("no-debug")
forbid (principal, action, resource == Aegis::Service::"hr/api")
when { context has headers && context.headers.hasTag("x-debug") };`;
    assert.deepEqual(ok(await t.call('update', 'mesh/policies/hr-headers', { policy }), 'put policy').rules, ['hr-headers/admins', 'hr-headers/no-debug']);
    const yes = await check('hr/web', 'hr/api', get({ 'x-role': 'admin' }));
    assert.equal(yes.allowed, true);
    assert.deepEqual(yes.rules, ['hr-headers/admins']);
    assert.equal((await check('hr/web', 'hr/api', get({ 'x-role': 'user' }))).allowed, false);
    const debug = await check('hr/web', 'hr/api', get({ 'x-role': 'admin', 'x-debug': '1' }));
    assert.equal(debug.allowed, false);
    assert.deepEqual(debug.rules, ['hr-headers/no-debug']);
    assert.equal((await check('hr/web', 'hr/api')).allowed, false, 'TCP: no headers');
    ok(await t.call('delete', 'mesh/policies/hr-headers'), 'delete');
  });

  const refused: [string, string, RegExp][] = [
    ['a getTag without hasTag', 'permit (principal, action, resource) when { context has headers && context.headers.getTag("x-role") == "admin" };', /does not validate against the Aegis schema: .*x-role/],
    ['headers read without has', 'permit (principal, action, resource) when { context.headers.hasTag("x-role") };', /does not validate against the Aegis schema: .*optional attribute `headers`/],
    ['a typo\'d attribute', 'permit (principal, action, resource) when { context has headers && context.headres.hasTag("x") };', /does not validate against the Aegis schema: .*headres/],
    ['a typo\'d has', 'permit (principal, action, resource) when { context has header && context.header.hasTag("x") };', /typo\/1 can never apply to a connection .*Cedar: .*policy is impossible/],
    ['a getTag of another tag than the hasTag', 'permit (principal, action, resource) when { context has headers && context.headers.hasTag("x-role") && context.headers.getTag("x-rol") == "a" };', /does not validate against the Aegis schema: .*x-rol/],
    ['headers read as a record', 'permit (principal, action, resource) when { context has headers && context.headers.x_role == "admin" };', /does not validate against the Aegis schema: .*x_role/],
  ];
  for (const [what, policy, want] of refused) {
    it(`refuses ${what} with Cedar's message, and stores nothing`, async () => {
      const before = await index();
      const msg = fails(await t.call('update', 'mesh/policies/typo', { policy }), 400, want);
      assert.match(msg, /mesh policy typo/);
      assert.equal(await index(), before);
      fails(await t.call('read', 'mesh/policies/typo'), 404);
    });
  }
});

describe('bad header conditions are a 400 with a clear message, and nothing is stored', () => {
  const nine = Array.from({ length: 9 }, (_, i) => ({ name: `x-h${i}`, present: true }));
  const cases: [string, unknown, RegExp][] = [
    ['a name that is not a token', [{ name: 'x role', exact: 'a' }], /headers\[0\]: header name "x role" is not a header name \(RFC 9110 token/],
    ['a pseudo-header name', [{ name: ':authority', exact: 'a' }], /":authority" is not a header name/],
    ['both exact and prefix', [{ name: 'x-a', exact: 'a', prefix: 'b' }], /headers\[0\] \(x-a\): give exactly one of present, exact or prefix, not exact and prefix/],
    ['none of present, exact, prefix', [{ name: 'x-a' }], /give exactly one of present, exact or prefix/],
    ['present: false', [{ name: 'x-a', present: false }], /present must be true/],
    ['control characters in a value', [{ name: 'x-a', exact: 'a\r\nx-evil: 1' }], /exact must not contain control characters/],
    ['a tab in a prefix', [{ name: 'x-a', prefix: 'a\tb' }], /prefix must not contain control characters/],
    ['more than 8 conditions', nine, /headers: at most 8 conditions/],
    ['a value that is too long', [{ name: 'x-a', exact: 'a'.repeat(1025) }], /exact is longer than 1024 characters/],
    ['a name that is too long', [{ name: 'x'.repeat(129), present: true }], /is not a header name/],
    ['an unknown field', [{ name: 'x-a', regex: '.*' }], /unknown field "regex"/],
    ['not a list', { 'x-a': 'b' }, /headers must be a list/],
    ['an entry that is not an object', ['x-a'], /headers\[0\] must be an object/],
    ['a value with a leading space', [{ name: 'x-a', exact: ' a' }], /must not start or end with a space/],
    ['an empty prefix', [{ name: 'x-a', prefix: '' }], /an empty prefix matches any value; use present/],
  ];
  for (const [what, headers, want] of cases) {
    it(`refuses ${what}`, async () => {
      const before = await index();
      fails(await put('hb/web', 'hb/api', { action: 'allow', headers }), 400, want);
      assert.equal(await index(), before, 'nothing was written');
      fails(await t.call('read', 'mesh/intentions/hb/web/hb/api'), 404);
    });
  }
});

describe('the decision cache', () => {
  it('holds for a set that never reads headers: requests with different headers share one entry', async () => {
    const a = new MeshAuthorizer();
    a.load([{ id: 'get', json: jsonOf('permit (principal, action, resource) when { context has method && context.method == "GET" };') }]);
    assert.equal(a.usesHeaders, false);
    assert.equal(a.cacheSize, 0);
    for (let i = 0; i < 20; i++) assert.equal(a.decide({ source: 'hc/web', destination: 'hc/api', method: 'GET', path: '/', headers: { 'x-request-id': String(i) } }).allowed, true);
    assert.equal(a.cacheSize, 1, 'one (source, destination, method, path) entry, whatever the headers');
    a.decide({ source: 'hc/web', destination: 'hc/api', method: 'GET', path: '/other', headers: {} });
    assert.equal(a.cacheSize, 2);
    // The server's set reads headers (the intentions above): its header-carrying checks are not cached.
    assert.equal(mesh.authorizer.usesHeaders, true);
    const before = mesh.authorizer.cacheSize;
    await check('hc/web', 'hc/api', get({ 'x-request-id': '1' }));
    await check('hc/web', 'hc/api', get({ 'x-request-id': '2' }));
    assert.equal(mesh.authorizer.cacheSize, before);
    await check('hc/web', 'hc/api');
    assert.equal(mesh.authorizer.cacheSize, before + 1, 'a TCP check is');
  });

  it('is bypassed for requests with headers when the set reads them; still used for TCP connections', () => {
    const a = new MeshAuthorizer();
    a.load([
      { id: 'l4', json: jsonOf('permit (principal == Aegis::Service::"hc/ops", action, resource);') },
      { id: 'admins', json: jsonOf('permit (principal, action, resource) when { context has headers && context.headers.hasTag("x-role") && context.headers.getTag("x-role") == "admin" };') },
    ]);
    assert.equal(a.usesHeaders, true);
    assert.equal(a.decide({ source: 'hc/web', destination: 'hc/api', method: 'GET', path: '/', headers: { 'x-role': 'admin' } }).allowed, true);
    assert.equal(a.decide({ source: 'hc/web', destination: 'hc/api', method: 'GET', path: '/', headers: { 'x-role': 'user' } }).allowed, false, 'not answered from a cache');
    assert.equal(a.decide({ source: 'hc/web', destination: 'hc/api', method: 'GET', path: '/', headers: { 'x-role': 'admin' } }).allowed, true);
    assert.equal(a.cacheSize, 0);
    assert.equal(a.decide({ source: 'hc/ops', destination: 'hc/api' }).allowed, true);
    assert.equal(a.cacheSize, 1, 'a TCP connection has no headers: cached as before');
    // Loading a header-free set turns the cache back on.
    a.load([{ id: 'l4', json: jsonOf('permit (principal, action, resource);') }]);
    assert.equal(a.usesHeaders, false);
  });

  it('detects every way a statement can read the headers, and only those', () => {
    const uses = (text: string) => usesHeaders(jsonOf(text));
    assert.equal(uses('permit (principal, action, resource) when { context has headers };'), true);
    assert.equal(uses('permit (principal, action, resource) unless { context has headers && context.headers.hasTag("a") };'), true);
    assert.equal(uses('permit (principal, action, resource) when { context == {} };'), true, 'the context as a whole');
    assert.equal(uses('permit (principal, action, resource) when { context has method && context.method == "GET" && context has path };'), false);
    assert.equal(uses('permit (principal, action, resource);'), false);
  });

  it('joins repeated headers as RFC 9110 says, cookies with "; "', () => {
    assert.deepEqual(headerTags({ Accept: ['a', 'b'], cookie: ['x=1', 'y=2'], 'x-none': undefined, 'x-one': 'v' }), { accept: 'a, b', cookie: 'x=1; y=2', 'x-one': 'v' });
  });
});

describe('LocalPolicy (the proxy) passes headers through', () => {
  it('decides on headers in http mode and keeps TCP decisions header-free', async () => {
    ok(await put('hl/web', 'hl/api', { action: 'allow', headers: [{ name: 'x-tenant', prefix: 'acme-' }] }), 'put');
    ok(await put('hl/web', 'hl/api2', { action: 'allow', methods: ['GET'] }), 'put');
    const local = new LocalPolicy('hl/api', 'example.org');
    local.load(mesh.concerning('hl', 'api').statements);
    const web = 'spiffe://example.org/ns/hl/svc/web';
    assert.equal(local.allows(web, { method: 'GET', path: '/', headers: { 'x-tenant': 'acme-1', host: 'api' } }), true);
    assert.equal(local.allows(web, { method: 'GET', path: '/', headers: { 'x-tenant': 'other' } }), false);
    assert.equal(local.allows(web, { method: 'GET', path: '/' }), false, 'no headers given: an HTTP request with none');
    assert.equal(local.allows(web), false, 'tcp');
    assert.equal(local.allows('spiffe://example.org/ns/hl/svc/evil', { method: 'GET', path: '/', headers: { 'x-tenant': 'acme-1' } }), false);
    assert.equal(local.decisions.cacheSize, 1, 'only the TCP decision was cached');
    // A header-free set: the sidecar's headers do not spoil the cache.
    const local2 = new LocalPolicy('hl/api2', 'example.org');
    local2.load(mesh.concerning('hl', 'api2').statements);
    for (let i = 0; i < 5; i++) assert.equal(local2.allows(web, { method: 'GET', path: '/', headers: { 'x-request-id': String(i) } }), true);
    assert.equal(local2.decisions.cacheSize, 1);
  });
});

/** Cedar text as the JSON statements are held in (the way LocalPolicy parses what mesh/config serves). */
function jsonOf(text: string): cedar.PolicyJson {
  const j = cedar.policyToJson(text);
  if (j.type === 'failure') throw new Error(j.errors.map((e) => e.message).join('; '));
  return j.json;
}

import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { rawRequest, type RawResult } from './http-tools.js';

// Random HTTP requests against a real server: whatever arrives, the server answers (never 5xx), keeps answering,
// and never changes the known secrets. No well-formed path in the mix names them; only path tricks point at them
// (fz/../known-alpha, known-dir//beta, known-alpha%00, ...), so any change means a trick got through.
// FUZZ_RUNS=5000 runs a longer search.

const KNOWN: Record<string, Record<string, unknown>> = {
  'known-alpha': { password: 'correct horse battery staple', nested: { list: [1, 'two', null], ok: true } },
  'known-dir/beta': { api_key: 'k-123', 'unicode-ключ': 'значение ✓' },
};
const TRAVERSALS = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%2E.'];
const towardKnown = fc.oneof(
  fc.tuple(fc.constantFrom('', 'fz/', 'fz/x/', 'known-dir/', 'known-dir/beta/', 'known-alpha/'), fc.constantFrom(...TRAVERSALS), fc.constantFrom('/', '//', '%2f', '/./'), fc.constantFrom('known-alpha', 'known-dir/beta', 'beta'))
    .map(([a, t, sep, k]) => `${a}${t}${sep}${k}`),
  fc.tuple(fc.constantFrom('known-alpha', 'known-dir/beta'), fc.constantFrom('%00', '%00.txt', '/.', '/..', '/', '/%2e', '/%2e%2e', '%2f', '%0a', '%0d%0a', '%09', '%7f', ';', '%20'))
    .map(([k, suffix]) => k + suffix),
  fc.constantFrom('./known-alpha', '%2e/known-alpha', '/known-alpha', '%2fknown-alpha', 'known-dir//beta', 'known-dir/./beta', 'known-dir/%2e/beta', 'known-dir/%2E/beta', '%00known-alpha'),
);

// Real path segments, minus the ones whose legitimate use by the root token would change the server in ways the
// invariants exclude (seal, unmount, audit devices writing to stdout, revoking the root token, the mount-wide
// delete_version_after in secret/config). Random segments start with "z" so they never spell one of those either.
const SEGMENTS = [
  'secret', 'data', 'metadata', 'delete', 'undelete', 'destroy', 'subkeys', 'sys', 'health', 'seal-status', 'metrics', 'key-status',
  'capabilities-self', 'audit-hash', 'auth', 'token', 'lookup-self', 'lookup', 'lookup-accessor', 'create', 'create-orphan', 'renew-self',
  'renew', 'accessors', 'init', 'unseal', 'app', 'foo', 'v1', 'list', 'cubbyhole', 'secret-engine', 'fuzz',
];
const TRICKS = [
  '..', '.', '%2e%2e', '%2E%2e', '%2e', '.%2e', '%2e.', '...', '%00', 'a%00b', '%0a', '%0d%0a', '%09', '%7f', '%2f', '%2F%2F', '%5c', '..%2f..',
  '%', '%zz', '%e0%a4%a', '%c0%ae%c0%ae', '%ff%fe', '%25', '%25%32%65', '~', '*', ':path', ':path+', '$', '%20', '+', '%3f', '%23', ';',
];
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'LIST', 'PROPFIND', 'MKCOL', 'PURGE', 'SEARCH', 'REPORT', 'LOCK', 'FOO', 'BREW', 'X-LIST'];
const CONTENT_TYPES = [
  'application/json', 'application/merge-patch+json', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8',
  'application/JSON', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml', 'application/octet-stream', '', ';', 'application/json, text/plain',
];
const QUERIES = [
  '', '', '', '?list=true', '?list=1', '?list=false', '?version=1', '?version=-1', '?version=abc', '?version=99999999999999999999', '?format=prometheus',
  '?activecode=299', '?sealedcode=200', '?uninitcode=999', '?activecode=1', '?depth=2', '?x=%zz', '?a=%00', '?list=true&list=false', '?__proto__=1',
  '?constructor=x', '?token=abc',
];
const BODY_KEYS = [
  'data', 'options', 'cas', 'version', 'versions', 'max_versions', 'cas_required', 'custom_metadata', 'policies', 'ttl', 'num_uses', 'meta',
  'no_parent', 'id', 'token', 'accessor', 'increment', 'key', 'reset', 'secret_shares', 'secret_threshold', 'input', 'format', 'type',
  'list', 'path', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '',
];

const randomSegment = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => `z${encodeURIComponent(s)}`),
  fc.string({ unit: 'binary-ascii', maxLength: 8 }).map((s) => `z${encodeURIComponent(s)}`),
  fc.uint8Array({ maxLength: 8 }).map((b) => `z${[...b].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('')}`),
);
const segment = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...SEGMENTS) },
  { weight: 3, arbitrary: fc.constantFrom(...TRICKS) },
  { weight: 3, arbitrary: randomSegment },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 2500 }).map((n) => 'z'.repeat(n)) },
);
const mutatedPath = fc.tuple(
  fc.array(segment, { minLength: 0, maxLength: 7 }),
  fc.constantFrom('/', '/', '/', '/', '//', '/./'),
  fc.boolean(),
  fc.constantFrom(...QUERIES),
).map(([segs, sep, trailing, query]) => `/v1/${segs.join(sep)}${trailing ? '/' : ''}${query}`);
// Mostly well-formed requests to real endpoints on a few shared keys, so writes, reads, patches, deletes and
// version operations meet each other's state; a fraction of keys carry a trick segment.
const key = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('fz-a', 'fz-b', 'fz/c', 'fz/d/e', 'fz-%C3%BC', 'fz%20sp') },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('fz', 'fz-a'), segment).map(([a, b]) => `${a}/${b}`) },
  { weight: 4, arbitrary: towardKnown },
);
const TEMPLATES = [
  'secret/data/{k}', 'secret/data/{k}', 'secret/data/{k}', 'secret/metadata/{k}', 'secret/metadata/{k}', 'secret/metadata/', 'secret/metadata/fz/',
  'secret/subkeys/{k}', 'secret/delete/{k}', 'secret/undelete/{k}', 'secret/destroy/{k}', 'sys/health', 'sys/seal-status', 'sys/metrics',
  'sys/key-status', 'sys/capabilities-self', 'auth/token/lookup-self', 'auth/token/create', 'auth/token/lookup', 'auth/token/renew-self',
  'sys/audit-hash/{k}', 'sys/init', 'sys/unseal', 'secret/{k}', 'nothing/{k}',
];
const wellFormedPath = fc.tuple(fc.constantFrom(...TEMPLATES), key, fc.constantFrom(...QUERIES))
  .map(([t, k, q]) => `/v1/${t.replace('{k}', k)}${q}`);
const v1Path = fc.oneof({ weight: 3, arbitrary: wellFormedPath }, { weight: 2, arbitrary: mutatedPath });
const path = fc.oneof(
  { weight: 12, arbitrary: v1Path },
  { weight: 1, arbitrary: fc.constantFrom('/', '/v1', '/v2/secret/data/app', '/v1x/sys/health', '//v1/sys/health', '/V1/sys/health', '/v1/../v1/sys/health', '/%76%31/sys/health') },
  { weight: 1, arbitrary: fc.integer({ min: 1025, max: 6000 }).map((n) => `/v1/secret/data/${'y'.repeat(n)}`) },
);
const jsonLeaf = fc.oneof(fc.string({ maxLength: 16 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
const jsonObject = fc.object({
  key: fc.oneof(fc.constantFrom(...BODY_KEYS), fc.string({ maxLength: 8 })),
  values: [jsonLeaf],
  maxDepth: 4,
  maxKeys: 6,
});
const nested = (open: string, leaf: string, close: string) => fc.integer({ min: 10, max: 6000 }).map((n) => `{"data":${open.repeat(n)}${leaf}${close.repeat(n)}}`);
const body = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 6, arbitrary: jsonObject.map((o) => JSON.stringify(o)) },
  { weight: 6, arbitrary: jsonObject.map((o) => JSON.stringify({ data: o })) },
  { weight: 2, arbitrary: fc.tuple(jsonObject, fc.nat(4)).map(([o, cas]) => JSON.stringify({ data: o, options: { cas } })) },
  { weight: 2, arbitrary: fc.array(fc.integer({ min: -1, max: 5 }), { maxLength: 4 }).map((versions) => JSON.stringify({ versions })) },
  { weight: 2, arbitrary: fc.string({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.array(jsonLeaf, { maxLength: 5 }).map((a) => JSON.stringify(a)) },
  { weight: 1, arbitrary: fc.constantFrom('null', '"str"', '42', 'true', '{', '{"data":', '{"data":{"a":1}', '[', '{}', '{"__proto__":{"admin":true}}', '{"data":{"__proto__":{"x":1}}}', '{"data":{"\\u005f_proto__":{"x":1}}}', '{"a":1,"a":2}', '\u0000', '{"data":{"a":"\\ud800"}}') },
  { weight: 1, arbitrary: nested('[', '', ']') },
  { weight: 1, arbitrary: nested('{"a":', '1', '}') },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((mb) => `{"data":{"big":"${'b'.repeat(mb * 700 * 1024)}"}}`) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('latin1')) },
);

describe('fuzz: random requests against a running server', () => {
  let s: InProcessServer;
  let fuzzToken: string;
  const agent = new Agent({ keepAlive: true, maxSockets: 2 });
  after(() => agent.destroy());

  const readKnown = async () => {
    const out: Record<string, { data: unknown; version: number }> = {};
    for (const key of Object.keys(KNOWN)) {
      const r = await s.api('GET', `secret/data/${key}`);
      assert.equal(r.status, 200, `${key}: ${r.text}`);
      out[key] = { data: r.body.data.data, version: r.body.data.metadata.version };
      assert.equal(out[key]!.version, 1);
    }
    return out;
  };

  before(async () => {
    s = await startTestServer();
    for (const [key, data] of Object.entries(KNOWN)) {
      const w = await s.api('POST', `secret/data/${key}`, { body: { data } });
      assert.equal(w.status, 200, w.text);
    }
    // A token that may do anything under secret/ (and what the default policy allows): random requests with it
    // reach the KV engine's handlers, not only the authorization checks.
    const p = await s.api('PUT', 'sys/policies/cedar/fuzz', { body: { policy: '@id("kv")\npermit (principal, action, resource in Aegis::Path::"secret/");\n' } });
    assert.equal(p.status, 204, p.text);
    const t = await s.api('POST', 'auth/token/create', { body: { policies: ['fuzz'] } });
    assert.equal(t.status, 200, t.text);
    fuzzToken = t.body.auth.client_token;
  });

  it('no request gets a 5xx or goes unanswered, errors keep the API format, and known secrets never change', { timeout: 120_000 }, async (t) => {
    const known = await readKnown();
    const tokens = fc.oneof(
      { weight: 2, arbitrary: fc.constantFrom<[string, string] | null>(null, ['x-vault-token', 'aegis.not-a-token'], ['x-vault-token', ''], ['authorization', 'Bearer']) },
      { weight: 3, arbitrary: fc.constantFrom<[string, string] | null>(['x-vault-token', fuzzToken], ['authorization', `Bearer ${fuzzToken}`]) },
      { weight: 3, arbitrary: fc.constantFrom<[string, string] | null>(['x-vault-token', s.rootToken], ['authorization', `bearer ${s.rootToken}`]) },
    );
    const chaotic = fc.record({
      method: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'LIST') }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
      path,
      body,
      contentType: fc.oneof({ weight: 3, arbitrary: fc.constant('application/json') }, { weight: 2, arbitrary: fc.option(fc.constantFrom(...CONTENT_TYPES), { nil: undefined }) }),
      token: tokens,
      wrap: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
      extra: fc.option(fc.tuple(fc.constantFrom('x-forwarded-for', 'accept', 'x-vault-request', 'x-vault-namespace', 'connection'), fc.string({ unit: 'grapheme-ascii', maxLength: 20 })), { nil: undefined }),
    });
    // Well-formed requests with a valid token, so the mix also drives the engines through real state changes.
    const coherent = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'LIST', 'HEAD'),
      path: wellFormedPath,
      body: fc.oneof(
        fc.constant(undefined),
        jsonObject.map((o) => JSON.stringify({ data: o })),
        fc.tuple(jsonObject, fc.nat(4)).map(([o, cas]) => JSON.stringify({ data: o, options: { cas } })),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 3 }).map((versions) => JSON.stringify({ versions })),
        fc.constantFrom('{"max_versions":2}', '{"custom_metadata":{"team":"x"}}', '{"cas_required":false}', '{"policies":["default"],"ttl":"1h"}', '{"token":"aegis.nope"}'),
      ),
      contentType: fc.constantFrom<string | undefined>('application/json', 'application/merge-patch+json', 'application/x-www-form-urlencoded'),
      token: fc.constantFrom<[string, string] | null>(['x-vault-token', fuzzToken], ['x-vault-token', s.rootToken], ['authorization', `Bearer ${s.rootToken}`]),
      wrap: fc.constant(false),
      extra: fc.constant(undefined),
    });
    // Requests that would change a known secret if any path trick were normalized instead of refused.
    const attack = fc.record({
      method: fc.constantFrom('POST', 'PUT', 'PATCH', 'DELETE', 'LIST'),
      path: fc.tuple(fc.constantFrom('data', 'data', 'metadata', 'delete', 'destroy'), towardKnown).map(([kind, k]) => `/v1/secret/${kind}/${k}`),
      body: fc.constantFrom('{"data":{"pwned":true}}', '{"versions":[1]}', '{"max_versions":1,"data":{"pwned":true}}'),
      contentType: fc.constantFrom<string | undefined>('application/json', 'application/merge-patch+json'),
      token: fc.constantFrom<[string, string] | null>(['x-vault-token', fuzzToken], ['x-vault-token', s.rootToken]),
      wrap: fc.constant(false),
      extra: fc.constant(undefined),
    });
    const request = fc.oneof({ weight: 2, arbitrary: chaotic }, { weight: 2, arbitrary: coherent }, { weight: 1, arbitrary: attack });

    let runs = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        runs++;
        const headers: Record<string, string> = {};
        if (r.contentType !== undefined) headers['content-type'] = r.contentType;
        if (r.token) headers[r.token[0]] = r.token[1];
        if (r.wrap) headers['x-vault-wrap-ttl'] = '30s';
        if (r.extra) headers[r.extra[0]] = r.extra[1];
        let res: RawResult;
        try {
          res = await rawRequest(s.address, r.path, { method: r.method, headers, body: r.body, agent, timeoutMs: 10_000 });
        } catch (err) {
          throw new Error(`no answer to ${r.method} ${r.path.slice(0, 200)}: ${(err as Error).message}`);
        }
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `${r.method} ${r.path.slice(0, 200)} → ${res.status} ${res.text.slice(0, 300)}`);
        if (res.status >= 400 && r.method !== 'HEAD') {
          // Errors are {"errors": [...]}; the one exception is Vault's 404 for a deleted or destroyed KV version,
          // which carries the version's metadata in an ordinary response.
          const kvDeleted = res.status === 404 && res.body?.data?.metadata !== undefined;
          assert.ok(res.body && (Array.isArray(res.body.errors) || kvDeleted), `error in the API format for ${r.method} ${r.path.slice(0, 200)} → ${res.status}: ${res.text.slice(0, 300)}`);
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300), includeErrorInReport: true, plugins: [fc.interruptAfterTimeLimit(45_000)] },
    );
    t.diagnostic(`${runs} requests; statuses ${JSON.stringify([...statuses].sort((a, b) => a[0] - b[0]))}`);
    assert.ok(runs >= 100, `only ${runs} requests ran before the time limit`);
    // The mix reached real handlers, not only the front door.
    assert.ok((statuses.get(200) ?? 0) + (statuses.get(204) ?? 0) >= 10, `too few random requests succeeded: ${JSON.stringify([...statuses])}`);

    // Still answering, on a fresh connection.
    const h = await s.api('GET', 'sys/health', { token: null });
    assert.equal(h.status, 200, h.text);
    assert.equal(h.body.sealed, false);
    // Known secrets unchanged: same data, same version, same listing.
    assert.deepEqual(await readKnown(), known);
    for (const [key, data] of Object.entries(KNOWN)) assert.deepEqual(known[key]!.data, data);
    for (const k of Object.keys(KNOWN)) {
      const m = await s.api('GET', `secret/metadata/${k}`);
      assert.equal(m.status, 200, m.text);
      assert.equal(m.body.data.current_version, 1, `${k} has no newer version`);
      assert.deepEqual(Object.keys(m.body.data.versions), ['1']);
      assert.equal(m.body.data.versions['1'].deletion_time, '');
      assert.equal(m.body.data.versions['1'].destroyed, false);
    }
    const list = await s.api('GET', 'secret/metadata/known-dir/?list=true');
    assert.equal(list.status, 200, list.text);
    assert.ok(list.body.data.keys.includes('beta'));
    // The tokens the mix used still work as before.
    assert.equal((await s.api('GET', 'auth/token/lookup-self')).status, 200);
    assert.equal((await s.api('GET', 'secret/data/known-alpha', { token: fuzzToken })).status, 200);
  });
});

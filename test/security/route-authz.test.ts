import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Operation } from '../../src/core/request.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';

const EXEMPT = ['sys/health', 'sys/init', 'sys/seal-status', 'sys/unseal'];
// Need no token but are audited: attestation (the credential is in the request, like Vault's login paths) and
// trust material outside tools fetch (bundles, CRLs, JWKS, OIDC discovery), and the wrapping endpoints whose
// credential is the wrapping token itself. Adding one must be deliberate.
const LOGIN = [
  'identity/.well-known/openid-configuration', 'identity/attest/join-token', 'identity/attest/jwt', 'identity/bundle', 'identity/bundle/spiffe',
  'identity/crl', 'identity/crl/pem', 'identity/jwks',
  'pki/ca', 'pki/ca/pem', 'pki/ca_chain', 'pki/crl', 'pki/crl/pem',
  'sys/wrapping/lookup', 'sys/wrapping/rewrap', 'sys/wrapping/unwrap',
];

function concrete(mount: string, pattern: string): string {
  const path = pattern.split('/').map((seg) => (/^:\w+[*+]$/.test(seg) ? 'x/y' : seg.startsWith(':') ? 'x' : seg)).join('/');
  return mount + path;
}

function httpOf(op: Operation): { method: string; query: string } {
  switch (op) {
    case 'read': return { method: 'GET', query: '' };
    case 'list': return { method: 'GET', query: '?list=true' };
    case 'patch': return { method: 'PATCH', query: '' };
    case 'delete': return { method: 'DELETE', query: '' };
    default: return { method: 'POST', query: '' };
  }
}

describe('no route bypasses authorization', () => {
  let s: InProcessServer;
  let noPolicy: string;
  let defaultOnly: string;
  before(async () => {
    s = await startTestServer();
    noPolicy = (await s.api('POST', 'auth/token/create', { body: { policies: [], no_default_policy: true } })).body.auth.client_token;
    defaultOnly = (await s.api('POST', 'auth/token/create', { body: { policies: ['default'] } })).body.auth.client_token;
  });

  it('only sys/health, sys/init, sys/seal-status and sys/unseal are unauthenticated', () => {
    const open = s.core.router.all().flatMap((m) => m.routes.filter((r) => r.route.unauthenticated).map((r) => m.entry.path + r.route.pattern));
    assert.deepEqual(open.sort(), EXEMPT);
  });

  it('the routes that need no token are exactly the attestation and public trust-material routes', async () => {
    const login = s.core.router.all().flatMap((m) => m.routes.filter((r) => r.route.login).map((r) => m.entry.path + r.route.pattern));
    assert.deepEqual(login.sort(), LOGIN);
    // Attestation without its credential is refused.
    assert.equal((await s.api('POST', 'identity/attest/join-token', { token: null, body: {} })).status, 400);
    assert.equal((await s.api('POST', 'identity/attest/join-token', { token: null, body: { join_token: 'aegis-join.nope' } })).status, 403);
    assert.equal((await s.api('POST', 'identity/attest/jwt', { token: null, body: { attestor: 'none', jwt: 'x.y.z' } })).status, 404);
  });

  it('every registered route and operation answers 403 to a valid token that has no policy, and to no token', async () => {
    let checked = 0;
    for (const m of s.core.router.all()) {
      for (const { route } of m.routes) {
        if (route.unauthenticated || route.login) continue;
        for (const op of Object.keys(route.operations) as Operation[]) {
          const path = concrete(m.entry.path, route.pattern);
          const { method, query } = httpOf(op);
          const body = method === 'POST' || method === 'PATCH' ? {} : undefined;
          const headers = method === 'PATCH' ? { 'content-type': 'application/merge-patch+json' } : undefined;
          const r = await s.api(method, path + query, { token: noPolicy, body, headers }).catch((e) => { throw new Error(`${method} ${path}${query}: ${e.cause}`); });
          assert.equal(r.status, 403, `${method} ${path}${query} with a no-policy token answered ${r.status}: ${r.text}`);
          assert.match(r.body.errors[0], /permission denied/);
          const anon = await s.api(method, path + query, { token: null, body, headers });
          assert.equal(anon.status, 403, `${method} ${path}${query} without a token answered ${anon.status}`);
          checked++;
        }
      }
    }
    // The table must really have been walked (sys, auth/token and secret/ together have dozens of operations).
    assert.ok(checked > 40, `only ${checked} operations checked`);
  });

  it('the default policy opens only the token self-service, lease renewal and wrapping paths', async () => {
    const allowed: string[] = [];
    for (const m of s.core.router.all()) {
      for (const { route } of m.routes) {
        if (route.unauthenticated || route.login) continue;
        for (const op of Object.keys(route.operations) as Operation[]) {
          const path = concrete(m.entry.path, route.pattern);
          // revoke-self would end this token mid-sweep: it is checked last, below.
          if (path === 'auth/token/revoke-self') continue;
          const { method, query } = httpOf(op);
          const r = await s.api(method, path + query, { token: defaultOnly, body: method === 'POST' || method === 'PATCH' ? {} : undefined, headers: method === 'PATCH' ? { 'content-type': 'application/merge-patch+json' } : undefined });
          if (r.status !== 403) allowed.push(`${op} ${path}`);
        }
      }
    }
    if ((await s.api('POST', 'auth/token/revoke-self', { token: defaultOnly })).status === 204) allowed.push('update auth/token/revoke-self');
    assert.equal((await s.api('GET', 'auth/token/lookup-self', { token: defaultOnly })).status, 403);
    assert.deepEqual(allowed.sort(), [
      'read auth/token/lookup-self', 'update auth/token/lookup-self', 'update auth/token/renew-self', 'update auth/token/revoke-self',
      'update sys/capabilities-self',
      // Renewing and looking up a lease whose ID one holds (Vault's default policy).
      'update sys/leases/lookup', 'update sys/leases/renew', 'update sys/renew',
      // Wrapping data of one's own (Vault's default policy).
      'update sys/wrapping/wrap',
    ].sort());
  });

  it('a path no route serves is 403 without permission and 404 with it (no existence leak)', async () => {
    assert.equal((await s.api('GET', 'nothing/mounted/here', { token: noPolicy })).status, 403);
    assert.equal((await s.api('GET', 'nothing/mounted/here')).status, 404);
    assert.equal((await s.api('GET', 'secret/no-such-route/x', { token: noPolicy })).status, 403);
  });

  it('an operation a route does not support is 403 without permission and 405 with it', async () => {
    assert.equal((await s.api('DELETE', 'sys/key-status', { token: noPolicy })).status, 403);
    assert.equal((await s.api('DELETE', 'sys/key-status')).status, 405);
  });
});

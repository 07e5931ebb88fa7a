import 'reflect-metadata';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { errorOf, identityClient, newWorkload, type IdentityCall, type IdResult, type Workload } from '../identity/identity-client.js';

// The built-in workload policy is what a sidecar proxy runs on: no token, only its X.509-SVID over mutual TLS. It
// must get exactly what a proxy needs for its own service and nothing of another's.

let s: InProcessServer;
let call: IdentityCall;
let web: Workload;

before(async () => {
  s = await startTestServer({ tls: true });
  call = identityClient(s.address, s.caFile!, s.rootToken);
  web = await newWorkload(call, 'web', 'shop');
});

/** A call as web's proxy: its SVID, no token. */
function asWeb(method: string, path: string, body?: unknown): Promise<IdResult> {
  return call(method, path, { token: null, cert: web.certPem, key: web.keyPem, ...(body === undefined ? {} : { body }) });
}

function sidecar(service: string, checkId: string) {
  return { address: '127.0.0.1', port: 21000, kind: 'connect-proxy', proxy: { destination_service: service }, checks: [{ id: checkId, name: 'alive', ttl: '15s' }] };
}

describe('workload policy: a proxy confined to its own service', () => {
  it('registers, reports and deregisters its own sidecar instance', async () => {
    const path = 'catalog/service/shop/web-sidecar-proxy/web-1-sidecar-proxy';
    const put = await asWeb('PUT', path, sidecar('web', 'sidecar:web-1'));
    assert.equal(put.status, 200, errorOf(put));
    const ttl = await asWeb('PUT', 'health/check/shop/sidecar:web-1', { status: 'pass', output: 'ok' });
    assert.equal(ttl.status, 204, errorOf(ttl));
    const entry = await call('GET', 'health/service/shop/web-sidecar-proxy?passing=true');
    assert.equal(entry.body.length, 1);
    const del = await asWeb('DELETE', path);
    assert.ok(del.status < 300, errorOf(del));
  });

  it('cannot register another service, its own app service, or in another namespace', async () => {
    for (const path of [
      'catalog/service/shop/api-sidecar-proxy/api-1-sidecar-proxy',
      'catalog/service/shop/web/web-1',
      'catalog/service/other/web-sidecar-proxy/web-1-sidecar-proxy',
    ]) {
      const r = await asWeb('PUT', path, sidecar('web', 'sidecar:x'));
      assert.equal(r.status, 403, `${path}: ${errorOf(r)}`);
    }
    assert.equal((await call('GET', 'catalog/service/shop/api-sidecar-proxy')).body.length ?? 0, 0);
  });

  it('cannot report a check another service owns, even in its namespace', async () => {
    const reg = await call('PUT', 'catalog/service/shop/api-sidecar-proxy/api-1-sidecar-proxy', { body: sidecar('api', 'sidecar:api-1') });
    assert.equal(reg.status, 200, errorOf(reg));
    const r = await asWeb('PUT', 'health/check/shop/sidecar:api-1', { status: 'pass' });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /needs update on catalog\/service\/shop\/api-sidecar-proxy\/api-1-sidecar-proxy/);
    // The refused report changed nothing: the check is still critical, so api is not discoverable.
    const passing = await call('GET', 'health/service/shop/api-sidecar-proxy?passing=true');
    assert.deepEqual(passing.body, []);
  });

  it('reads its own mesh config and other services’ sidecars, nothing else', async () => {
    const own = await asWeb('GET', 'mesh/config/shop/web');
    assert.equal(own.status, 200, errorOf(own));
    assert.ok(Array.isArray(own.body.data.statements));
    assert.equal((await asWeb('GET', 'mesh/config/shop/api')).status, 403);
    assert.equal((await asWeb('GET', 'mesh/config/other/web')).status, 403);
    const discovery = await asWeb('GET', 'health/service/shop/api-sidecar-proxy');
    assert.equal(discovery.status, 200, errorOf(discovery));
    assert.equal((await asWeb('GET', 'health/service/shop/api')).status, 403);
    assert.equal((await asWeb('GET', 'catalog/services')).status, 403);
    assert.equal((await asWeb('GET', 'mesh/intentions')).status, 403);
    assert.equal((await asWeb('GET', 'secret/data/anything')).status, 403);
  });

  it('a revoked SVID gets nothing at all', async () => {
    const cron = await newWorkload(call, 'cron', 'shop');
    const rev = await call('POST', 'identity/revoke', { body: { spiffe_id: cron.spiffeId } });
    assert.ok(rev.status < 300, errorOf(rev));
    const r = await call('GET', 'mesh/config/shop/cron', { token: null, cert: cron.certPem, key: cron.keyPem });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /revoked/);
  });
});

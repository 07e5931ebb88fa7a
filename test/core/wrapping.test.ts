import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { entries } from '../audit/audit-log.js';
import { startTestServer, type ApiResult } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { LedgerEngine } from './lease-engine.js';

// Response wrapping over real HTTP (the X-Vault-Wrap-TTL header is part of the contract), with a file audit device
// on so the audit trail of an intercepted token can be checked.
const srv = await startTestServer();
const auditFile = join(tempDir('wrap-audit'), 'audit.log');
assert.equal((await srv.api('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: auditFile } } })).status, 204);
assert.equal((await srv.api('PUT', 'secret/data/wrapped/db', { body: { data: { password: 'hunter2-wrapped' } } })).status, 200);

function okBody(r: ApiResult, what: string): any {
  assert.ok(r.status === 200, `${what}: ${r.status} ${r.text}`);
  return r.body;
}

function apiError(r: ApiResult, status: number, message: RegExp): void {
  assert.equal(r.status, status, r.text);
  assert.match(r.body.errors.join(' '), message);
}

async function wrappedRead(path: string, ttl: string | number = 60): Promise<any> {
  return okBody(await srv.api('GET', path, { headers: { 'x-vault-wrap-ttl': String(ttl) } }), `wrapped read of ${path}`).wrap_info;
}

describe('response wrapping', () => {
  it('X-Vault-Wrap-TTL returns only wrap_info; the wrapping token unwraps the response once', async () => {
    const r = okBody(await srv.api('GET', 'secret/data/wrapped/db', { headers: { 'x-vault-wrap-ttl': '2m' } }), 'wrapped read');
    assert.equal(r.data, null, 'no data next to the wrapping token');
    assert.ok(!JSON.stringify(r).includes('hunter2-wrapped'));
    const w = r.wrap_info;
    assert.match(w.token, /^aegis\./);
    assert.equal(w.ttl, 120);
    assert.equal(w.creation_path, 'secret/data/wrapped/db');
    assert.ok(!Number.isNaN(Date.parse(w.creation_time)));
    assert.match(w.accessor, /^[0-9a-f]{32}$/);

    const un = okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 'unwrap');
    assert.equal(un.data.data.password, 'hunter2-wrapped');
    assert.equal(un.data.metadata.version, 1);
  });

  it('a second unwrap fails, says the token was intercepted, is audited and recorded as a security event', async () => {
    const w = await wrappedRead('secret/data/wrapped/db');
    okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: null, body: { token: w.token } }), 'first unwrap (token in the body)');
    const again = await srv.api('PUT', 'sys/wrapping/unwrap', { token: null, body: { token: w.token } });
    apiError(again, 400, /already unwrapped .*someone intercepted it.*secret\/data\/wrapped\/db/);
    const events = await srv.core.events.recent(10, 'wrapping_token_reuse');
    assert.ok(events.some((e) => e.subject === 'secret/data/wrapped/db' && e.details?.accessor === w.accessor), 'security event recorded');
    await sleep(50);
    const unwraps = entries(auditFile).filter((e) => e.request.path === 'sys/wrapping/unwrap' && e.type === 'response');
    const last = unwraps[unwraps.length - 1]!;
    assert.equal(last.response!.status, 400);
    assert.match(last.error!, /already unwrapped/);
    assert.ok(!JSON.stringify(entries(auditFile)).includes(w.token), 'the wrapping token is only in the audit log as an HMAC');
  });

  it('of many concurrent unwraps exactly one gets the response', async () => {
    const w = await wrappedRead('secret/data/wrapped/db');
    const rs = await Promise.all(Array.from({ length: 12 }, () => srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token })));
    assert.equal(rs.filter((r) => r.status === 200).length, 1, rs.map((r) => r.status).join(','));
    assert.ok(rs.every((r) => r.status === 200 || r.status === 400));
  });

  it('lookup shows TTL, time and path without using the token; rewrap moves it to a new token', async () => {
    const w = await wrappedRead('secret/data/wrapped/db', 90);
    const look = okBody(await srv.api('PUT', 'sys/wrapping/lookup', { token: null, body: { token: w.token } }), 'lookup');
    assert.equal(look.data.creation_ttl, 90);
    assert.equal(look.data.creation_path, 'secret/data/wrapped/db');
    const re = okBody(await srv.api('PUT', 'sys/wrapping/rewrap', { token: w.token }), 'rewrap').wrap_info;
    assert.notEqual(re.token, w.token);
    assert.equal(re.ttl, 90);
    apiError(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 400, /already unwrapped/);
    assert.equal(okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: re.token }), 'unwrap rewrapped').data.data.password, 'hunter2-wrapped');
  });

  it('sys/wrapping/wrap wraps any data', async () => {
    const w = okBody(await srv.api('PUT', 'sys/wrapping/wrap', { body: { api_key: 'k-123', n: 4 }, headers: { 'x-vault-wrap-ttl': '30s' } }), 'wrap').wrap_info;
    assert.equal(w.ttl, 30);
    assert.deepEqual(okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 'unwrap').data, { api_key: 'k-123', n: 4 });
  });

  it('a wrapped token creation carries wrapped_accessor; the unwrapped token works', async () => {
    const w = okBody(await srv.api('POST', 'auth/token/create', { body: { policies: ['default'] }, headers: { 'x-vault-wrap-ttl': '60' } }), 'wrapped create').wrap_info;
    assert.match(w.wrapped_accessor, /^[0-9a-f]{32}$/);
    const auth = okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 'unwrap').auth;
    assert.equal(auth.accessor, w.wrapped_accessor);
    assert.equal((await srv.api('GET', 'auth/token/lookup-self', { token: auth.client_token })).status, 200);
  });

  it('a wrapped leased secret keeps its lease', async () => {
    const engine = new LedgerEngine();
    srv.core.mounts.register('ledger', engine.factory);
    assert.equal((await srv.api('POST', 'sys/mounts/ledger', { body: { type: 'ledger' } })).status, 204);
    const w = await wrappedRead('ledger/creds/w?ttl=300');
    const un = okBody(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 'unwrap');
    assert.match(un.lease_id, /^ledger\/creds\/w\//);
    assert.equal(un.lease_duration, 300);
    assert.equal(un.data.name, 'w-0');
  });

  it('the wrapping token opens nothing else, and expires with its TTL', async () => {
    const w = await wrappedRead('secret/data/wrapped/db', 1);
    assert.equal((await srv.api('GET', 'secret/data/wrapped/db', { token: w.token })).status, 403);
    await sleep(1300);
    apiError(await srv.api('PUT', 'sys/wrapping/unwrap', { token: w.token }), 400, /not valid or does not exist/);
  });

  it('bad input: a bad X-Vault-Wrap-TTL, no token, an unknown token', async () => {
    apiError(await srv.api('GET', 'secret/data/wrapped/db', { headers: { 'x-vault-wrap-ttl': 'soon' } }), 400, /X-Vault-Wrap-TTL.*not a duration/);
    apiError(await srv.api('GET', 'secret/data/wrapped/db', { headers: { 'x-vault-wrap-ttl': '0' } }), 400, /between 1s and/);
    apiError(await srv.api('GET', 'secret/data/wrapped/db', { headers: { 'x-vault-wrap-ttl': '90d' } }), 400, /between 1s and/);
    apiError(await srv.api('PUT', 'sys/wrapping/unwrap', { token: null }), 400, /wrapping token is required/);
    apiError(await srv.api('PUT', 'sys/wrapping/unwrap', { token: 'aegis.not-a-wrapping-token' }), 400, /not valid or does not exist/);
    // A normal token is not a wrapping token.
    apiError(await srv.api('PUT', 'sys/wrapping/unwrap', { token: null, body: { token: srv.rootToken } }), 400, /not valid or does not exist/);
    apiError(await srv.api('PUT', 'sys/wrapping/wrap', { body: {} }), 400, /nothing to wrap/);
  });
});

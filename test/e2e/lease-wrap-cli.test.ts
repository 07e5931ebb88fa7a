import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LedgerEngine } from '../core/lease-engine.js';
import { cliOk, runCli, startTestServer } from '../helpers/server.js';

// The real `aegis` CLI as a child process against a real server: lease and wrapping commands.
const srv = await startTestServer();
const engine = new LedgerEngine();
srv.core.mounts.register('ledger', engine.factory);
assert.equal((await srv.api('POST', 'sys/mounts/ledger', { body: { type: 'ledger' } })).status, 204);
const env = { AEGIS_ADDR: srv.address, AEGIS_TOKEN: srv.rootToken };
const cli = cliOk(env);

describe('aegis lease', () => {
  it('read prints the lease; lookup, renew, list and revoke act on it', async () => {
    const out = await cli('read', 'ledger/creds/cli', 'ttl=600', 'max_ttl=3600');
    const id = /lease_id\s+(\S+)/.exec(out)![1]!;
    assert.match(id, /^ledger\/creds\/cli\//);
    assert.match(out, /lease_duration\s+600s/);
    assert.match(out, /name\s+cli-0/);

    assert.match(await cli('lease', 'lookup', id), /ttl\s+(59\d|600)s/);
    assert.match(await cli('lease', 'renew', id, '--increment', '20m'), /lease_duration\s+1200s/);
    assert.match(await cli('lease', 'list', 'ledger/creds/cli/'), new RegExp(id.split('/').pop()!.replace(/[-]/g, '\\-')));
    assert.match(await cli('lease', 'revoke', id), /Revoked lease/);
    assert.deepEqual(engine.revoked, ['cli-0']);

    const bad = await runCli(['lease', 'lookup', id], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^Error: .*lease not found/);
  });

  it('revoke --prefix revokes a whole path; --force needs --prefix', async () => {
    await cli('read', 'ledger/creds/many', 'ttl=600');
    await cli('read', 'ledger/creds/many', 'ttl=600');
    assert.match(await cli('lease', 'revoke', '--prefix', 'ledger/creds/many/'), /Revoked 2 lease\(s\)/);
    const r = await runCli(['lease', 'revoke', '--force', 'x/y'], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--force needs --prefix/);
  });

  it('failing lists revocations that are being retried', async () => {
    const id = /lease_id\s+(\S+)/.exec(await cli('read', 'ledger/creds/down', 'ttl=600'))![1]!;
    engine.failRevoke = 'database unreachable';
    try {
      const r = await runCli(['lease', 'revoke', id], env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /database unreachable/);
      const out = await cli('lease', 'failing');
      assert.match(out, /1 failing revocation/);
      assert.ok(out.includes(id));
    } finally {
      engine.failRevoke = null;
    }
  });
});

describe('aegis read/write --wrap-ttl and aegis unwrap', () => {
  it('a wrapped read prints a wrapping token; unwrap prints the data once', async () => {
    await cli('kv', 'put', 'secret/cli-wrap', 'password=s3cret-wrap');
    const out = await cli('read', '--wrap-ttl', '5m', 'secret/data/cli-wrap');
    assert.ok(!out.includes('s3cret-wrap'));
    assert.match(out, /wrapping_token_ttl:\s+300s/);
    const token = /wrapping_token:\s+(\S+)/.exec(out)![1]!;
    const un = await cli('unwrap', token);
    assert.match(un, /s3cret-wrap/);
    const again = await runCli(['unwrap', token], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^Error: .*already unwrapped/);
  });

  it('unwrap without an argument uses AEGIS_TOKEN as the wrapping token', async () => {
    const token = /wrapping_token:\s+(\S+)/.exec(await cli('write', '--wrap-ttl', '60', 'sys/wrapping/wrap', 'k=v'))![1]!;
    const r = await runCli(['unwrap', '--format', 'json'], { ...env, AEGIS_TOKEN: token });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).data, { k: 'v' });
  });

  it('a bad --wrap-ttl is one error line', async () => {
    const r = await runCli(['read', '--wrap-ttl', 'later', 'secret/data/cli-wrap'], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: .*X-Vault-Wrap-TTL/);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Core, SqliteStorage } from '../../src/core/index.js';
import { KeyFileUnseal } from '../../src/core/seal/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { request } from '../helpers/core.js';
import { startTestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

function newCore(dbPath: string, auto: KeyFileUnseal | null = null): Core {
  return new Core({ storage: new SqliteStorage({ path: dbPath, synchronous: 'normal' }), logger: createLogger('silent'), autoUnseal: auto });
}

describe('seal: Shamir shares', () => {
  it('init 5/3 gives five distinct shares and leaves Aegis sealed; three shares unseal, with progress shown', async () => {
    const core = newCore(join(tempDir('seal'), 'a.db'));
    await core.start();
    assert.equal(core.sealStatus().initialized, false);
    const { keys, rootToken } = await core.initialize(5, 3);
    assert.equal(keys.length, 5);
    assert.equal(new Set(keys.map((k) => k.toString('hex'))).size, 5);
    assert.ok(rootToken.startsWith('aegis.'));
    let s = core.sealStatus();
    assert.deepEqual([s.initialized, s.sealed, s.t, s.n, s.progress], [true, true, 3, 5, 0]);
    s = await core.submitUnsealKey(keys[4]!.toString('hex'));
    assert.equal(s.progress, 1);
    assert.ok(s.nonce);
    s = await core.submitUnsealKey(keys[1]!.toString('base64'));
    assert.equal(s.progress, 2);
    s = await core.submitUnsealKey(keys[2]!.toString('hex'));
    assert.deepEqual([s.sealed, s.progress], [false, 0]);
    const r = await core.handle(request('read', 'auth/token/lookup-self', {}, rootToken));
    assert.equal(r.status, 200);
    await core.stop();
  });

  it('the same share twice does not count twice', async () => {
    const core = newCore(join(tempDir('seal'), 'b.db'));
    await core.start();
    const { keys } = await core.initialize(3, 2);
    await core.submitUnsealKey(keys[0]!.toString('hex'));
    const s = await core.submitUnsealKey(keys[0]!.toString('hex'));
    assert.deepEqual([s.sealed, s.progress], [true, 1]);
    await core.stop();
  });

  it('shares from another initialization do not unseal, and progress is reset', async () => {
    const a = newCore(join(tempDir('seal'), 'c.db'));
    const b = newCore(join(tempDir('seal'), 'd.db'));
    await a.start();
    await b.start();
    const ka = (await a.initialize(3, 2)).keys;
    const kb = (await b.initialize(3, 2)).keys;
    await a.submitUnsealKey(ka[0]!.toString('hex'));
    await assert.rejects(a.submitUnsealKey(kb[1]!.toString('hex')), /do not reconstruct the root key/);
    assert.deepEqual([a.sealStatus().sealed, a.sealStatus().progress], [true, 0]);
    await a.submitUnsealKey(ka[0]!.toString('hex'));
    await a.submitUnsealKey(ka[2]!.toString('hex'));
    assert.equal(a.sealStatus().sealed, false);
    await a.stop();
    await b.stop();
  });

  it('malformed shares are refused with a clear message', async () => {
    const core = newCore(join(tempDir('seal'), 'e.db'));
    await core.start();
    await core.initialize(3, 2);
    await assert.rejects(core.submitUnsealKey('not-a-share'), /not a valid share/);
    await assert.rejects(core.submitUnsealKey('abcd'), /not a valid share/);
    assert.equal(core.sealStatus().progress, 0);
    await core.stop();
  });

  it('refuses to initialize twice and refuses impossible thresholds', async () => {
    const core = newCore(join(tempDir('seal'), 'f.db'));
    await core.start();
    await assert.rejects(core.initialize(3, 4), /secret_threshold/);
    await assert.rejects(core.initialize(0, 0), /secret_shares/);
    await assert.rejects(core.initialize(5, 1), /at least 2/);
    assert.equal(core.sealStatus().initialized, false);
    await core.initialize(1, 1);
    await assert.rejects(core.initialize(1, 1), /already initialized/);
    await core.stop();
  });

  it('data written before a restart is readable after unsealing with the shares', async () => {
    const db = join(tempDir('seal'), 'g.db');
    const first = newCore(db);
    await first.start();
    const { keys, rootToken } = await first.initialize(3, 2);
    for (const k of keys.slice(0, 2)) await first.submitUnsealKey(k.toString('hex'));
    assert.equal((await first.handle(request('update', 'secret/data/app', { data: { v: 'kept' } }, rootToken))).status, 200);
    await first.stop();
    const second = newCore(db);
    await second.start();
    assert.equal(second.sealStatus().sealed, true);
    for (const k of keys.slice(1, 3)) await second.submitUnsealKey(k.toString('hex'));
    const r = await second.handle(request('read', 'secret/data/app', {}, rootToken));
    assert.equal(r.status, 200);
    assert.deepEqual((r.response!.data as { data: unknown }).data, { v: 'kept' });
    await second.stop();
  });
});

describe('seal: auto-unseal key file', () => {
  it('a server configured with a key file unseals itself at start', async () => {
    const dir = tempDir('auto');
    KeyFileUnseal.generate(join(dir, 'unseal.key'));
    const db = join(dir, 'a.db');
    const first = newCore(db, new KeyFileUnseal(join(dir, 'unseal.key')));
    await first.start();
    const { rootToken } = await first.initialize(3, 2);
    assert.equal(first.sealStatus().sealed, false);
    await first.handle(request('update', 'secret/data/x', { data: { a: 1 } }, rootToken));
    await first.stop();
    const second = newCore(db, new KeyFileUnseal(join(dir, 'unseal.key')));
    await second.start();
    assert.equal(second.sealStatus().sealed, false);
    assert.equal((await second.handle(request('read', 'secret/data/x', {}, rootToken))).status, 200);
    await second.stop();
  });

  it('another key file cannot unseal, and the shares still work as a backup', async () => {
    const dir = tempDir('auto');
    KeyFileUnseal.generate(join(dir, 'right.key'));
    KeyFileUnseal.generate(join(dir, 'wrong.key'));
    const db = join(dir, 'b.db');
    const first = newCore(db, new KeyFileUnseal(join(dir, 'right.key')));
    await first.start();
    const { keys } = await first.initialize(3, 2);
    await first.stop();
    const second = newCore(db, new KeyFileUnseal(join(dir, 'wrong.key')));
    await assert.rejects(second.start());
    assert.equal(second.sealStatus().sealed, true);
    for (const k of keys.slice(0, 2)) await second.submitUnsealKey(k.toString('hex'));
    assert.equal(second.sealStatus().sealed, false);
    await second.stop();
  });

  it('refuses a key file readable by others, or one without a 256-bit key', async () => {
    const dir = tempDir('auto');
    const { writeFileSync, chmodSync } = await import('node:fs');
    writeFileSync(join(dir, 'open.key'), randomBytes(32).toString('base64'));
    chmodSync(join(dir, 'open.key'), 0o644);
    assert.throws(() => new KeyFileUnseal(join(dir, 'open.key')), /chmod 600/);
    writeFileSync(join(dir, 'short.key'), randomBytes(8).toString('base64'), { mode: 0o600 });
    assert.throws(() => new KeyFileUnseal(join(dir, 'short.key')), /256-bit/);
  });
});

describe('a sealed server', () => {
  it('reveals no secret, no policy, no mount list, no token: everything but the four seal endpoints answers 503', async () => {
    const s = await startTestServer({ shares: 3, threshold: 2 });
    const { api, rootToken } = s;
    assert.equal((await api('PUT', 'secret/data/app/db', { body: { data: { password: 'p4ss' } } })).status, 200);
    assert.equal((await api('PUT', 'sys/policies/cedar/app', { body: { policy: 'permit(principal, action, resource in Aegis::Path::"secret/");' } })).status, 204);
    assert.equal((await api('PUT', 'sys/seal', {})).status, 204);

    const probes: [string, string][] = [
      ['GET', 'secret/data/app/db'], ['GET', 'secret/metadata/app/db'], ['GET', 'secret/metadata/?list=true'],
      ['GET', 'sys/mounts'], ['GET', 'sys/policies/cedar/app'], ['GET', 'sys/policies/cedar/?list=true'],
      ['GET', 'auth/token/lookup-self'], ['GET', 'sys/audit'], ['GET', 'sys/metrics?format=prometheus'],
      ['PUT', 'secret/data/app/db'], ['DELETE', 'secret/metadata/app/db'], ['GET', 'no/such/path'], ['GET', 'sys/key-status'],
    ];
    for (const [method, path] of probes) {
      const r = await api(method, path, { body: method === 'PUT' ? { data: { x: 1 } } : undefined });
      assert.equal(r.status, 503, `${method} ${path}`);
      assert.deepEqual(r.body, { errors: ['Aegis is sealed'] }, `${method} ${path}`);
      assert.ok(!r.text.includes('p4ss') && !r.text.includes('secret/') && !r.text.includes(rootToken));
    }
    const status = await api('GET', 'sys/seal-status', { token: null });
    assert.equal(status.status, 200);
    assert.equal(status.body.sealed, true);
    assert.equal((await api('GET', 'sys/health', { token: null })).status, 503);
    assert.equal((await api('GET', 'sys/init', { token: null })).body.initialized, true);

    // Unsealing brings everything back unchanged.
    for (const k of s.keys.slice(0, 2)) await api('PUT', 'sys/unseal', { token: null, body: { key: k.toString('hex') } });
    const back = await api('GET', 'secret/data/app/db');
    assert.equal(back.status, 200);
    assert.deepEqual(back.body.data.data, { password: 'p4ss' });
  });

  it('sys/seal needs sudo: a token without it cannot seal the server', async () => {
    const { api } = await startTestServer();
    await api('PUT', 'sys/policies/cedar/sealer', { body: { policy: 'permit(principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/seal");' } });
    const token = (await api('POST', 'auth/token/create', { body: { policies: ['sealer'] } })).body.auth.client_token;
    const r = await api('PUT', 'sys/seal', { token });
    assert.equal(r.status, 403);
    assert.match(r.body.errors[0], /sudo/);
    assert.equal((await api('GET', 'sys/seal-status', { token: null })).body.sealed, false);
  });
});

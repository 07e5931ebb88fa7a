import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Core, SqliteStorage } from '../../src/core/index.js';
import type { PipelineResult } from '../../src/core/pipeline.js';
import { KeyFileUnseal } from '../../src/core/seal/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { request } from '../helpers/core.js';
import { startTestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { onCleanup } from '../helpers/cleanup.js';
import { LedgerEngine } from './lease-engine.js';
import { until } from '../helpers/wait.js';

// A real core on a real SQLite file, auto-unsealed from a key file so it can be stopped and started again on the
// same data (the expiry manager must survive restarts). The ledger engine stands in for a database.
interface Node {
  core: Core;
  engine: LedgerEngine;
  root: string;
  call(op: Parameters<typeof request>[0], path: string, data?: Record<string, unknown>, token?: string): Promise<PipelineResult>;
}

async function startNode(dir: string, rootToken?: string): Promise<Node> {
  const keyFile = join(dir, 'unseal.key');
  const first = !rootToken;
  if (first) KeyFileUnseal.generate(keyFile);
  const core = new Core({
    storage: new SqliteStorage({ path: join(dir, 'aegis.db'), synchronous: 'normal' }), logger: createLogger('silent'),
    autoUnseal: new KeyFileUnseal(keyFile), leaseRetryBaseMs: 40,
  });
  const engine = new LedgerEngine();
  core.mounts.register('ledger', engine.factory);
  await core.start();
  let root = rootToken ?? '';
  if (first) {
    root = (await core.initialize(1, 1)).rootToken;
    const r = await core.handle(request('update', 'sys/mounts/ledger', { type: 'ledger' }, root));
    assert.equal(r.status, 204, r.error?.message);
  }
  onCleanup(() => core.stop());
  return { core, engine, root, call: (op, path, data = {}, token = root) => core.handle(request(op, path, data, token)) };
}

function ok(r: PipelineResult, what = 'call'): any {
  assert.ok(r.status >= 200 && r.status < 300, `${what}: expected success, got ${r.status} ${r.error?.message ?? ''}`);
  return r.response;
}

function fails(r: PipelineResult, status: number, message: RegExp): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.error?.message ?? JSON.stringify(r.response?.data)}`);
  assert.match(r.error!.message, message);
}

const n = await startNode(tempDir('leases'));

async function issue(name: string, data: Record<string, unknown> = {}, token?: string): Promise<{ id: string; name: string; duration: number }> {
  const res = ok(await n.call('read', `ledger/creds/${name}`, data, token), `creds ${name}`);
  assert.ok(res.lease, 'the response carries a lease');
  return { id: res.lease.id, name: res.data.name, duration: res.lease.duration };
}

describe('leases: issue, lookup, list', () => {
  it('a secret with a lifetime gets a lease whose ID is the request path plus a random part', async () => {
    const s = await issue('app', { ttl: '1h' });
    assert.match(s.id, /^ledger\/creds\/app\/[A-Za-z0-9_-]{24}$/);
    assert.equal(s.duration, 3600);
    const look = ok(await n.call('update', 'sys/leases/lookup', { lease_id: s.id })).data;
    assert.equal(look.id, s.id);
    assert.equal(look.renewable, true);
    assert.equal(look.last_renewal, null);
    assert.ok(look.ttl > 3590 && look.ttl <= 3600, `ttl ${look.ttl}`);
    assert.ok(Date.parse(look.expire_time) - Date.parse(look.issue_time) === 3600_000);
    const keys = ok(await n.call('list', 'sys/leases/lookup/ledger/creds/app/')).data.keys;
    assert.ok(keys.includes(s.id.split('/').pop()), 'listed under its prefix');
    assert.deepEqual(ok(await n.call('list', 'sys/leases/lookup/ledger/')).data.keys, ['creds/']);
  });

  it('an engine without a TTL gets the system default, and no lease is longer than the system max', async () => {
    const s = await issue('defaults');
    assert.equal(s.duration, n.core.defaultTtl);
    const capped = await issue('long', { ttl: `${n.core.maxTtl + 1000}s` });
    assert.equal(capped.duration, n.core.maxTtl);
  });

  it('over HTTP the lease is in Vault\'s envelope: lease_id, lease_duration, renewable', async () => {
    const srv = await startTestServer();
    const engine = new LedgerEngine();
    srv.core.mounts.register('ledger', engine.factory);
    assert.equal((await srv.api('POST', 'sys/mounts/ledger', { body: { type: 'ledger' } })).status, 204);
    const r = await srv.api('GET', 'ledger/creds/web?ttl=90');
    assert.equal(r.status, 200, r.text);
    assert.match(r.body.lease_id, /^ledger\/creds\/web\//);
    assert.equal(r.body.lease_duration, 90);
    assert.equal(r.body.renewable, true);
    assert.equal(r.body.data.name, 'web-0');
    const renewed = await srv.api('PUT', 'sys/leases/renew', { body: { lease_id: r.body.lease_id, increment: 120 } });
    assert.equal(renewed.status, 200, renewed.text);
    assert.equal(renewed.body.lease_id, r.body.lease_id);
    assert.equal(renewed.body.lease_duration, 120);
    assert.equal((await srv.api('PUT', `sys/leases/revoke/${r.body.lease_id}`)).status, 204);
    assert.deepEqual(engine.revoked, ['web-0']);
  });

  it('bad lease IDs are 400 with a message', async () => {
    fails(await n.call('update', 'sys/leases/lookup', { lease_id: 'ledger/creds/app/nope' }), 400, /lease not found/);
    fails(await n.call('update', 'sys/leases/lookup', {}), 400, /lease_id is required/);
    fails(await n.call('update', 'sys/leases/renew', { lease_id: 'a//b' }), 400, /invalid lease ID/);
    fails(await n.call('update', 'sys/leases/revoke', { lease_id: '../../etc' }), 400, /invalid lease ID/);
    fails(await n.call('list', 'sys/leases/lookup/ledger/creds'), 400, /must end with "\/"/);
  });
});

describe('leases: renew', () => {
  it('renew extends from now by the increment and tells the engine the new expiry', async () => {
    const s = await issue('renew', { ttl: 60, max_ttl: 600 });
    const before = Date.now();
    const res = ok(await n.call('update', 'sys/leases/renew', { lease_id: s.id, increment: '5m' }));
    assert.equal(res.lease.duration, 300);
    const renewal = n.engine.renewals.find((r) => r.name === s.name)!;
    assert.ok(renewal.expireTime >= before + 300_000 && renewal.expireTime <= Date.now() + 300_000);
    const look = ok(await n.call('update', 'sys/leases/lookup', { lease_id: s.id })).data;
    assert.ok(look.last_renewal !== null);
    assert.ok(look.ttl > 290);
  });

  it('asking past the max TTL is refused; renewing without an increment is capped at the max with a warning', async () => {
    const s = await issue('max', { ttl: 2, max_ttl: 3 });
    fails(await n.call('update', 'sys/leases/renew', { lease_id: s.id, increment: 3600 }), 400, /past its max TTL.*at most \d+s can be granted/);
    await sleep(1200); // now a renewal by the original 2 s would pass the 3 s max
    const capped = ok(await n.call('update', 'sys/leases/renew', { lease_id: s.id }));
    assert.ok(capped.lease.duration <= 2, `capped to ${capped.lease.duration}`);
    assert.match(capped.warnings.join(' '), /max TTL/);
    fails(await n.call('update', 'sys/leases/renew', { lease_id: s.id }), 400, /cannot be renewed further/);
  });

  it('a lease issued as not renewable cannot be renewed', async () => {
    const s = await issue('fixed', { ttl: 60, renewable: false });
    fails(await n.call('update', 'sys/leases/renew', { lease_id: s.id }), 400, /not renewable/);
  });

  it('the default policy lets the holder of a lease ID renew and look it up, but not revoke it', async () => {
    const child = ok(await n.call('update', 'auth/token/create', { policies: ['default'] })).auth.client_token;
    const s = await issue('holder', { ttl: 60, max_ttl: 600 });
    ok(await n.call('update', 'sys/leases/renew', { lease_id: s.id, increment: 120 }, child));
    ok(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }, child));
    fails(await n.call('update', 'sys/leases/revoke', { lease_id: s.id }, child), 403, /permission denied/);
    fails(await n.call('update', 'sys/leases/revoke-prefix/ledger/', {}, child), 403, /permission denied/);
  });
});

describe('leases: revoke', () => {
  it('revoke makes the engine destroy the secret and forgets the lease', async () => {
    const s = await issue('rev', { ttl: 600 });
    assert.ok(n.engine.live.has(s.name));
    assert.equal((await n.call('update', 'sys/leases/revoke', { lease_id: s.id })).status, 204);
    assert.ok(!n.engine.live.has(s.name));
    assert.ok(n.engine.revoked.includes(s.name));
    fails(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }), 400, /lease not found/);
    fails(await n.call('update', 'sys/leases/revoke', { lease_id: s.id }), 400, /lease not found/);
  });

  it('sync=false queues the revocation (202) and it happens shortly after', async () => {
    const s = await issue('async', { ttl: 600 });
    assert.equal((await n.call('update', 'sys/leases/revoke', { lease_id: s.id, sync: false })).status, 202);
    await until('the queued revocation', () => n.engine.revoked.includes(s.name));
  });

  it('revoke-prefix revokes every lease under a path and needs sudo; legacy sys/revoke-prefix works too', async () => {
    const a = await Promise.all([issue('batch', { ttl: 600 }), issue('batch', { ttl: 600 }), issue('batch', { ttl: 600 })]);
    const other = await issue('batchother', { ttl: 600 });
    const r = ok(await n.call('update', 'sys/leases/revoke-prefix/ledger/creds/batch/'));
    assert.equal(r.data.revoked, 3);
    for (const s of a) assert.ok(n.engine.revoked.includes(s.name));
    assert.ok(n.engine.live.has(other.name), 'a sibling prefix is untouched');
    const legacy = await issue('legacy', { ttl: 600 });
    ok(await n.call('update', 'sys/revoke-prefix/ledger/creds/legacy'));
    assert.ok(n.engine.revoked.includes(legacy.name));
  });

  it('a lease expires on its own at its TTL', async () => {
    const s = await issue('expire', { ttl: 1 });
    await until('expiry at 1 s', () => n.engine.revoked.includes(s.name), 4000);
    fails(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }), 400, /lease not found/);
  });

  it('revoking a token revokes the secrets leased to it, and to its children', async () => {
    const parent = ok(await n.call('update', 'auth/token/create', { policies: ['root'] })).auth.client_token;
    const child = ok(await n.call('update', 'auth/token/create', { policies: ['root'] }, parent)).auth.client_token;
    const p = await issue('tok', { ttl: 600 }, parent);
    const c = await issue('tok', { ttl: 600 }, child);
    const mine = await issue('tok', { ttl: 600 });
    ok(await n.call('update', 'auth/token/revoke', { token: parent }));
    assert.ok(n.engine.revoked.includes(p.name) && n.engine.revoked.includes(c.name));
    assert.ok(n.engine.live.has(mine.name), 'the root token\'s lease stays');
  });

  it('disabling a mount revokes what it leased', async () => {
    const engine = new LedgerEngine();
    n.core.mounts.register('ledger2', engine.factory);
    ok(await n.call('update', 'sys/mounts/gone', { type: 'ledger2' }));
    const r = ok(await n.call('read', 'gone/creds/x', { ttl: 600 }));
    ok(await n.call('delete', 'sys/mounts/gone'));
    assert.deepEqual(engine.revoked, ['x-0']);
    fails(await n.call('update', 'sys/leases/lookup', { lease_id: r.lease.id }), 400, /lease not found/);
  });
});

describe('leases: failed revocations', () => {
  it('a failed revocation keeps the lease, is listed and counted, retried with backoff, and succeeds once the engine recovers', async () => {
    const s = await issue('flaky', { ttl: 600 });
    n.engine.failRevoke = 'connection refused';
    const attemptsBefore = n.engine.revokeAttempts;
    fails(await n.call('update', 'sys/leases/revoke', { lease_id: s.id }), 502, /revoking lease .*connection refused.*retried with backoff/);
    ok(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }));
    let listing = ok(await n.call('read', 'sys/leases')).data;
    const failing = listing.failing.find((f: any) => f.lease_id === s.id);
    assert.ok(failing, 'listed as failing');
    assert.match(failing.last_error, /connection refused/);
    fails(await n.call('update', 'sys/leases/renew', { lease_id: s.id }), 400, /being revoked/);
    // Backoff from 40 ms doubling: several more attempts within a second, each later than the last.
    await until('three retries', () => n.engine.revokeAttempts - attemptsBefore >= 4, 4000);
    listing = ok(await n.call('read', 'sys/leases')).data;
    assert.ok(listing.failing.find((f: any) => f.lease_id === s.id).attempts >= 3);
    const metrics = await n.core.metrics.registry.getSingleMetricAsString('aegis_lease_revocation_failures_total');
    assert.match(metrics, /aegis_lease_revocation_failures_total [1-9]/);
    assert.match(await n.core.metrics.registry.getSingleMetricAsString('aegis_leases_revocation_failing'), /aegis_leases_revocation_failing [1-9]/);
    n.engine.failRevoke = null;
    await until('the retry that succeeds', () => n.engine.revoked.includes(s.name), 8000);
    fails(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }), 400, /lease not found/);
    assert.ok(!ok(await n.call('read', 'sys/leases')).data.failing.some((f: any) => f.lease_id === s.id));
  });

  it('revoke-force drops a lease whose secret cannot be revoked', async () => {
    const s = await issue('stuck', { ttl: 600 });
    n.engine.failRevoke = 'database is gone';
    try {
      fails(await n.call('update', 'sys/leases/revoke-prefix/ledger/creds/stuck/'), 502, /could not be revoked/);
      ok(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }));
      ok(await n.call('update', 'sys/leases/revoke-force/ledger/creds/stuck/'));
      fails(await n.call('update', 'sys/leases/lookup', { lease_id: s.id }), 400, /lease not found/);
      assert.ok(!ok(await n.call('read', 'sys/leases')).data.failing.some((f: any) => f.lease_id === s.id));
    } finally {
      n.engine.failRevoke = null;
    }
  });
});

describe('leases: the expiry manager survives restarts', () => {
  it('after a restart, leases that expired while the server was down are revoked at once and pending ones at their time', async () => {
    const dir = tempDir('leases-restart');
    const a = await startNode(dir);
    const short = ok(await a.call('read', 'ledger/creds/short', { ttl: 1 })).lease.id;
    const later = ok(await a.call('read', 'ledger/creds/later', { ttl: 4 })).lease.id;
    const long = ok(await a.call('read', 'ledger/creds/long', { ttl: 3600 })).lease.id;
    await a.core.stop();
    await sleep(1500); // `short` expires while no server runs.

    const b = await startNode(dir, a.root);
    await until('the expired lease revoked at unseal', () => b.engine.revoked.includes('short-0'), 2000);
    assert.ok(!b.engine.revoked.includes('later-1'), 'the pending lease is not revoked early');
    ok(await b.call('update', 'sys/leases/lookup', { lease_id: later }));
    await until('the pending lease revoked at its time', () => b.engine.revoked.includes('later-1'), 5000);
    ok(await b.call('update', 'sys/leases/lookup', { lease_id: long }));
    fails(await b.call('update', 'sys/leases/lookup', { lease_id: short }), 400, /lease not found/);
    // The engine revokes first; the lease's record is deleted (and uncounted) once that delete commits.
    await until('only the long lease left', () => b.core.leases.count === 1, 2000);
  });

  it('a failing revocation keeps retrying after a restart', async () => {
    const dir = tempDir('leases-restart-fail');
    const a = await startNode(dir);
    const id = ok(await a.call('read', 'ledger/creds/bad', { ttl: 600 })).lease.id;
    a.engine.failRevoke = 'down';
    fails(await a.call('update', 'sys/leases/revoke', { lease_id: id }), 502, /down/);
    await a.core.stop();
    const b = await startNode(dir, a.root);
    assert.ok(ok(await b.call('read', 'sys/leases')).data.failing.some((f: any) => f.lease_id === id), 'still listed after restart');
    await until('retried and revoked after restart', () => b.engine.revoked.includes('bad-0'), 5000);
  });
});

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { makeCore, type TestCore } from '../helpers/core.js';
import { ROOT, startTestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { enableFileDevice, entries, fileLines, joinLines, tokenWithPolicy } from './audit-log.js';

const FULL = '/dev/full';
const hasDevFull = existsSync(FULL);

/** Enables a device on /dev/full, which opens fine and fails every write with ENOSPC. */
async function enableFullDevice(t: TestCore, name: string): Promise<void> {
  await t.call('update', `sys/audit/${name}`, { type: 'file', options: { file_path: FULL } });
  // With no other device even the answer to this request cannot be audited, so its status is not the point:
  // the device must be enabled.
  assert.ok(t.core.audit.list().some((d) => d.name === name), `device ${name} was not enabled`);
}

async function failures(t: TestCore, device: string): Promise<number> {
  const r = await t.call('read', 'sys/metrics', { format: 'prometheus' });
  assert.equal(r.status, 200, r.error?.message);
  const body = String(r.response!.raw!.body);
  const m = new RegExp(`^aegis_audit_write_failures_total\\{device="${device}"\\} (\\d+)$`, 'm').exec(body);
  return m ? Number(m[1]) : 0;
}

describe('audit fails closed when no device can write', { skip: !hasDevFull && 'no /dev/full on this system' }, () => {
  let t: TestCore;

  before(async () => {
    t = await makeCore();
    await enableFullDevice(t, 'full');
  });

  it('a KV write is refused with 503 and a message saying audit failed, and the secret is not stored', async () => {
    const r = await t.call('update', 'secret/data/unaudited', { data: { v: 'should-never-be-stored' } });
    assert.equal(r.status, 503);
    assert.equal(r.error?.code, 'ERR_AUDIT_FAILED');
    assert.match(r.error!.message, /audit/);
    assert.match(r.error!.message, /refused/);
  });

  it('a read is refused too: no secret is served without an audit record', async () => {
    // The secret is written with no device enabled, then the broken device comes back.
    await t.core.audit.disable('full');
    assert.equal((await t.call('update', 'secret/data/existing', { data: { v: 'x' } })).status, 200);
    await enableFullDevice(t, 'full');
    const r = await t.call('read', 'secret/data/existing');
    assert.equal(r.status, 503);
    assert.equal(r.response, null, 'no data is returned');
  });

  it('a denied request cannot slip through unaudited either: it is refused with 503, not answered', async () => {
    const r = await t.call('read', 'secret/data/existing', {}, null);
    assert.equal(r.status, 503);
  });

  it('the refused write did not reach storage (checked with the device disabled afterwards)', async () => {
    await t.core.audit.disable('full');
    assert.equal((await t.call('read', 'secret/data/unaudited')).status, 404);
    assert.equal((await t.call('read', 'secret/data/existing')).status, 200, 'control: the other secret is there');
  });

  it('over HTTP the client gets 503 with the audit message in errors', async () => {
    const s = await startTestServer();
    const put = await s.api('PUT', 'sys/audit/full', { body: { type: 'file', options: { file_path: FULL } } });
    assert.ok([204, 503].includes(put.status), `enable: ${put.status} ${put.text}`);
    const r = await s.api('PUT', 'secret/data/http', { body: { data: { v: 'x' } } });
    assert.equal(r.status, 503);
    assert.match((r.body as { errors: string[] }).errors.join(' '), /audit fails closed/);
  });
});

describe('a failing device next to a healthy one', { skip: !hasDevFull && 'no /dev/full on this system' }, () => {
  it('requests succeed, the healthy log records them, and aegis_audit_write_failures_total counts every failed entry', async () => {
    const t = await makeCore();
    const good = join(t.dir, 'good.log');
    await enableFileDevice(t, 'good', good);
    const en = await t.call('update', 'sys/audit/full', { type: 'file', options: { file_path: FULL } });
    assert.equal(en.status, 204, en.error?.message);

    const before = await failures(t, 'full');
    // So far: the response to enabling it, and the request entry of this metrics read.
    assert.equal(before, 2);
    const n = 5;
    for (let i = 0; i < n; i++) assert.equal((await t.call('update', `secret/data/ok/${i}`, { data: { v: String(i) } })).status, 200);
    const after = await failures(t, 'full');
    // Each write: request + response entry; plus the first metrics read's response and the second one's request.
    assert.equal(after - before, 2 * n + 2);
    assert.equal(await failures(t, 'good'), 0, 'the healthy device has no failures');

    const logged = entries(good).filter((e) => e.request.path.startsWith('secret/data/ok/'));
    assert.equal(logged.length, 2 * n);
    const v = verifyAuditLog(readFileSync(good, 'utf8'));
    assert.equal(v.ok, true, v.message);
  });
});

describe('enabling a device is validated', () => {
  let t: TestCore;
  before(async () => {
    t = await makeCore();
  });

  async function refused(name: string, body: Record<string, unknown>, message: RegExp): Promise<void> {
    const r = await t.call('update', `sys/audit/${name}`, body);
    assert.equal(r.status, 400, `${name}: ${r.status} ${r.error?.message}`);
    assert.match(r.error!.message, message);
    assert.equal(t.core.audit.list().some((d) => d.name === name), false, `${name} must not be enabled`);
  }

  it('a relative file_path is refused with 400 (a log must not land wherever the server happens to run)', async () => {
    await refused('rel', { type: 'file', options: { file_path: 'audit.log' } }, /must be absolute: audit\.log/);
    await refused('rel2', { type: 'file', options: { file_path: '../audit.log' } }, /must be absolute/);
  });

  it('an unknown type or a missing file_path is refused with 400', async () => {
    await refused('syslog', { type: 'syslog', options: {} }, /file or stdout/);
    await refused('notype', { options: { file_path: join(t.dir, 'x.log') } }, /type is required/);
    await refused('nopath', { type: 'file', options: {} }, /needs options\.file_path/);
  });

  it('a file in a directory that cannot be written is refused with 400 naming the path', async () => {
    const ro = join(t.dir, 'read-only');
    mkdirSync(ro, { mode: 0o500 });
    chmodSync(ro, 0o500);
    let dir = ro;
    // root ignores directory permissions: use a directory where no one can create files.
    try {
      closeSync(openSync(join(ro, 'probe'), 'a'));
      rmSync(join(ro, 'probe'));
      dir = '/proc';
    } catch {
      // not writable, as intended
    }
    const path = join(dir, 'aegis-audit.log');
    await refused('ro', { type: 'file', options: { file_path: path } }, new RegExp(`${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} cannot be opened for appending: E[A-Z]+`));
    assert.equal(existsSync(path), false);
  });

  it('an invalid device name or an already-used name is refused with 400', async () => {
    await refused('-bad', { type: 'file', options: { file_path: join(t.dir, 'b.log') } }, /letters, digits/);
    await enableFileDevice(t, 'once', join(t.dir, 'once.log'));
    const r = await t.call('update', 'sys/audit/once', { type: 'file', options: { file_path: join(t.dir, 'twice.log') } });
    assert.equal(r.status, 400);
    assert.match(r.error!.message, /already enabled/);
    assert.equal(t.core.audit.list().find((d) => d.name === 'once')?.options.file_path, join(t.dir, 'once.log'));
  });
});

describe('audit configuration needs sudo', () => {
  let t: TestCore;
  before(async () => {
    t = await makeCore();
  });

  it('a token allowed only update on sys/audit/x (no sudo) cannot enable a device: 403', async () => {
    const { token } = await tokenWithPolicy(t, 'audit-nosudo', 'permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"sys/audit/x");');
    const r = await t.call('update', 'sys/audit/x', { type: 'file', options: { file_path: join(t.dir, 'x.log') } }, token);
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /sudo/);
    assert.equal(t.core.audit.list().length, 0);
    assert.equal(existsSync(join(t.dir, 'x.log')), false);
  });

  it('with update and sudo the same request succeeds (the 403 above was for want of sudo)', async () => {
    const { token } = await tokenWithPolicy(t, 'audit-sudo', 'permit (principal, action in [Aegis::Action::"update", Aegis::Action::"sudo"], resource == Aegis::Path::"sys/audit/y");');
    const r = await t.call('update', 'sys/audit/y', { type: 'file', options: { file_path: join(t.dir, 'y.log') } }, token);
    assert.equal(r.status, 204, r.error?.message);
    assert.deepEqual(t.core.audit.list().map((d) => d.name), ['y']);
  });

  it('without sudo a token can neither list nor disable devices: 403, and the device stays', async () => {
    const { token } = await tokenWithPolicy(t, 'audit-ops', 'permit (principal, action in [Aegis::Action::"read", Aegis::Action::"delete"], resource in Aegis::Path::"sys/");');
    assert.equal((await t.call('read', 'sys/audit', {}, token)).status, 403);
    const del = await t.call('delete', 'sys/audit/y', {}, token);
    assert.equal(del.status, 403);
    assert.match(del.error!.message, /sudo/);
    assert.deepEqual(t.core.audit.list().map((d) => d.name), ['y']);
  });

  it('the refused attempts are themselves in the audit log', () => {
    const denied = entries(join(t.dir, 'y.log')).filter((e) => e.error?.includes('sudo'));
    // Each refusal is a request entry and a response entry carrying the 403.
    assert.deepEqual(denied.map((e) => `${e.type} ${e.request.operation} ${e.request.path}`), [
      'request read sys/audit', 'response read sys/audit', 'request delete sys/audit/y', 'response delete sys/audit/y',
    ]);
    assert.deepEqual(denied.filter((e) => e.type === 'response').map((e) => e.response?.status), [403, 403]);
  });
});

/**
 * Runs fixtures/short-write.ts under a file size limit (`ulimit -f`): the kernel cuts a write at the limit
 * (a short write) and fails the next one — disk-full behaviour, for real, without filling a disk.
 */
function runShortWriteFixture(dir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('/bin/sh', ['-c', 'ulimit -f 8192 && exec "$0" "$@"', process.execPath, '--import', 'tsx', join(ROOT, 'test/audit/fixtures/short-write.ts'), dir, ...args], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('an entry that can only be half written', { skip: process.platform !== 'linux' && '/proc/self/limits and ulimit -f are Linux-specific' }, () => {
  it('refuses the request (503) instead of recording half an entry and running it; the secret is not stored', async () => {
    const dir = tempDir('short-write');
    const room = 100;
    const out = await runShortWriteFixture(dir, [String(room)]);
    assert.equal(out.code, 0, out.stderr);
    const r = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as {
      limit: number; padded: number; sizeAfter: number; enable: number; before: number;
      after: { status: number; code: string | null }; stored: number;
    };
    assert.deepEqual({ enable: r.enable, before: r.before }, { enable: 204, before: 200 });
    assert.equal(r.padded, r.limit - room);
    assert.equal(r.sizeAfter, r.limit, 'the kernel did write part of the entry (the situation under test happened)');
    assert.deepEqual({ status: r.after.status, code: r.after.code }, { status: 503, code: 'ERR_AUDIT_FAILED' });
    assert.equal(r.stored, 404, 'a request whose audit entry was cut short must not run');

    const lines = fileLines(join(dir, 'audit.log'));
    const last = lines.at(-1)!;
    assert.equal(Buffer.byteLength(last), room, 'the torn entry is the last, partial line');
    const v = verifyAuditLog(joinLines(lines));
    assert.deepEqual({ line: v.line, problem: v.problem }, { line: lines.length, problem: 'malformed' });
    assert.equal(verifyAuditLog(joinLines(lines.slice(0, -1))).ok, true, 'everything before the torn entry chains');
  });
});

describe('group commit: a batch of entries cut short', { skip: process.platform !== 'linux' && 'ulimit -f is Linux-specific' }, () => {
  it('runs exactly the requests whose request entries were wholly written; the rest get 503 and change nothing', async () => {
    const dir = tempDir('short-batch');
    const out = await runShortWriteFixture(dir, ['2.5', '10']);
    assert.equal(out.code, 0, out.stderr);
    const r = JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { limit: number; sizeAfter: number; statuses: number[]; codes: (string | null)[]; stored: number[] };
    assert.equal(r.sizeAfter, r.limit, 'the group write was cut by the kernel (the situation under test happened)');
    const lines = fileLines(join(dir, 'audit.log'));
    const whole = lines.slice(0, -1).map((l) => JSON.parse(l) as { type: string; request: { path: string } });
    const logged = whole.filter((e) => e.type === 'request' && e.request.path.startsWith('secret/data/after-')).map((e) => e.request.path.slice('secret/data/'.length)).sort();
    const stored = r.stored.map((s, i) => (s === 200 ? `after-${i}` : null)).filter((x): x is string => x !== null).sort();
    assert.ok(logged.length >= 1 && logged.length < 10, `the cut fell inside the batch (${logged.length} of 10 written)`);
    assert.deepEqual(stored, logged, 'exactly the requests whose request entries were wholly written ran');
    // Nobody got an answer without its response entry: every one of them failed closed.
    assert.deepEqual(r.codes, Array(10).fill('ERR_AUDIT_FAILED'));
    assert.equal(verifyAuditLog(joinLines(lines.slice(0, -1))).ok, true, 'everything before the torn line chains');
  });
});

describe('group commit under concurrency', () => {
  it('200 concurrent requests are all recorded, each as a request and a response, and both devices\' chains verify', async () => {
    const t = await makeCore();
    await enableFileDevice(t, 'a', join(t.dir, 'a.log'));
    await enableFileDevice(t, 'b', join(t.dir, 'b.log'));
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) =>
      i % 2 ? t.call('update', `secret/data/many/${i}`, { data: { i } }) : t.call('read', 'secret/data/many/none')));
    assert.deepEqual([...new Set(results.map((r) => r.status))].sort(), [200, 404]);
    for (const f of ['a.log', 'b.log']) {
      const text = readFileSync(join(t.dir, f), 'utf8');
      assert.equal(verifyAuditLog(text).ok, true, `${f} chain`);
      const es = entries(join(t.dir, f)).filter((e) => e.request.path.startsWith('secret/data/many/'));
      assert.equal(es.filter((e) => e.type === 'request').length, 200);
      assert.equal(es.filter((e) => e.type === 'response').length, 200);
    }
  });
});

describe('audit device hygiene', () => {
  it('two devices cannot share one file (their chains would interleave), and an existing file is tightened to 0600', async () => {
    const t = await makeCore();
    const file = join(t.dir, 'shared.log');
    writeFileSync(file, '', { mode: 0o644 });
    assert.equal((await t.call('update', 'sys/audit/one', { type: 'file', options: { file_path: file } })).status, 204);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const r = await t.call('update', 'sys/audit/two', { type: 'file', options: { file_path: file } });
    assert.equal(r.status, 400);
    assert.match(r.error!.message, /already writes to/);
  });

  it('a disabled device keeps its HMAC key, so logs written before can still be searched after re-enabling', async () => {
    const t = await makeCore();
    const opts = { type: 'file', options: { file_path: join(t.dir, 'keep.log') } };
    assert.equal((await t.call('update', 'sys/audit/keep', opts)).status, 204);
    const before = (await t.call('update', 'sys/audit-hash/keep', { input: 'needle' })).response!.data!.hash;
    assert.equal((await t.call('delete', 'sys/audit/keep')).status, 204);
    assert.equal((await t.call('update', 'sys/audit/keep', opts)).status, 204);
    assert.equal((await t.call('update', 'sys/audit-hash/keep', { input: 'needle' })).response!.data!.hash, before);
  });
});

describe('malformed requests are audited', () => {
  it('a path-traversal probe is refused with 400 and leaves an audit entry naming the error', async () => {
    const t = await makeCore();
    await enableFileDevice(t, 'probe', join(t.dir, 'probe.log'));
    const r = await t.call('read', 'secret/data/../../sys/mounts');
    assert.equal(r.status, 400);
    const e = entries(join(t.dir, 'probe.log')).find((x) => x.request.path === 'secret/data/../../sys/mounts');
    assert.ok(e, 'the probe is in the log');
    assert.match(e.error!, /"\." and "\.\." segments are not allowed/);
    assert.equal(e.request.client_token?.startsWith('hmac-sha256:'), true);
  });
});

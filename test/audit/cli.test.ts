import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { runCli, startDevProcess, type DevProcess } from '../helpers/server.js';
import { entries, fileLines } from './audit-log.js';

// The audit commands of the real CLI against a real `aegis dev` process (which starts with a file device
// named "file" at <data dir>/audit.log).

/** Resolves once `cond()` holds, checking after each chunk the process writes to stdout; fails after 15s. */
function whenStdout(dev: DevProcess, cond: () => boolean): Promise<void> {
  if (cond()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { dev.proc.stdout!.off('data', check); reject(new Error('timed out waiting for output')); }, 15_000);
    function check() {
      if (!cond()) return;
      clearTimeout(timer);
      dev.proc.stdout!.off('data', check);
      resolve();
    }
    dev.proc.stdout!.on('data', check);
  });
}

const auditLines = (text: string) => text.split('\n').filter((l) => l.startsWith('{"seq":'));

describe('aegis audit enable | list | hash | disable against a running server', () => {
  let dev: DevProcess;
  let env: NodeJS.ProcessEnv;
  let fileLog = '';

  before(async () => {
    dev = await startDevProcess();
    env = { AEGIS_ADDR: dev.address, AEGIS_TOKEN: dev.rootToken };
    fileLog = join(dev.dataDir, 'audit.log');
  });

  it('enables a second file device and a stdout device; list shows all three', async () => {
    const second = join(dev.dataDir, 'second.log');
    const a = await runCli(['audit', 'enable', '--path', 'second', 'file', `file_path=${second}`], env);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /Enabled the file audit device at: second\//);
    const b = await runCli(['audit', 'enable', 'stdout', '--description', 'container log'], env);
    assert.equal(b.code, 0, b.stderr);
    const l = await runCli(['audit', 'list', '--format', 'json'], env);
    assert.equal(l.code, 0, l.stderr);
    const listed = JSON.parse(l.stdout) as Record<string, { type: string; options: Record<string, string>; description: string }>;
    assert.deepEqual(Object.keys(listed).sort(), ['file/', 'second/', 'stdout/']);
    assert.equal(listed['second/']!.options.file_path, second);
    assert.equal(listed['stdout/']!.description, 'container log');
  });

  it('the stdout device writes a hash chain of its own to the server stdout, with the same request ids as the file', async () => {
    const put = await dev.api('PUT', 'secret/data/cli', { body: { data: { v: 'stdout-secret-value' } } });
    assert.equal(put.status, 200);
    await whenStdout(dev, () => auditLines(dev.stdout()).some((l) => l.includes('"path":"secret/data/cli"') && l.includes('"type":"response"')));
    const out = auditLines(dev.stdout());
    const v = verifyAuditLog(out.map((l) => `${l}\n`).join(''));
    assert.equal(v.ok, true, v.message);
    assert.equal(dev.stdout().includes('stdout-secret-value'), false, 'no secret in clear on stdout');
    const ids = (ls: string[]) => new Set(ls.map((l) => (JSON.parse(l) as { request: { id: string; path: string } }).request).filter((r) => r.path === 'secret/data/cli').map((r) => r.id));
    assert.deepEqual(ids(out), ids(fileLines(fileLog)));
    assert.equal(ids(out).size, 1);
  });

  it('aegis audit hash prints the HMAC the device logged for the root token', async () => {
    const r = await runCli(['audit', 'hash', 'file', dev.rootToken], env);
    assert.equal(r.code, 0, r.stderr);
    const hash = r.stdout.trim();
    assert.match(hash, /^hmac-sha256:[0-9a-f]{64}$/);
    const mine = entries(fileLog).filter((e) => e.request.path === 'secret/data/cli');
    assert.equal(mine.length, 2);
    for (const e of mine) assert.equal(e.request.client_token, hash);
    const other = await runCli(['audit', 'hash', 'second', dev.rootToken], env);
    assert.notEqual(other.stdout.trim(), hash, 'another device, another key');
  });

  it('refuses a relative path with the server message and a non-zero exit', async () => {
    const r = await runCli(['audit', 'enable', '--path', 'rel', 'file', 'file_path=relative.log'], env);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /must be absolute/);
  });

  it('disable stops a device: no more lines on stdout, the file device goes on', async () => {
    const r = await runCli(['audit', 'disable', 'stdout'], env);
    assert.equal(r.code, 0, r.stderr);
    const fileBefore = fileLines(fileLog).length;
    assert.equal((await dev.api('GET', 'secret/data/cli')).status, 200);
    assert.equal(fileLines(fileLog).length, fileBefore + 2, 'the file device logged the read');
    // Stdout is a pipe: to know everything written so far has arrived, enable a new stdout device and wait for
    // its first line. Lines reach the pipe in order, so a line for the read above would already be here.
    const e = await runCli(['audit', 'enable', '--path', 'marker', 'stdout'], env);
    assert.equal(e.code, 0, e.stderr);
    await whenStdout(dev, () => auditLines(dev.stdout()).some((l) => l.includes('"path":"sys/audit/marker"')));
    const reads = auditLines(dev.stdout()).filter((l) => l.includes('"operation":"read"') && l.includes('"path":"secret/data/cli"'));
    assert.deepEqual(reads, [], 'the disabled device wrote nothing more');
    const l = await runCli(['audit', 'list', '--format', 'json'], env);
    assert.deepEqual(Object.keys(JSON.parse(l.stdout) as object).sort(), ['file/', 'marker/', 'second/']);
  });

  it('after rotation (rename + SIGHUP) the new file continues the chain: --partial verifies it, old + new verify whole', async () => {
    const rotated = `${fileLog}.1`;
    renameSync(fileLog, rotated);
    dev.proc.kill('SIGHUP');
    // The signal is handled asynchronously: requests go to the old file until the device is reopened.
    for (let i = 0; i < 200 && !existsSync(fileLog); i++) assert.equal((await dev.api('GET', 'sys/audit')).status, 200);
    assert.ok(existsSync(fileLog), 'SIGHUP reopened the audit file');
    assert.equal((await dev.api('GET', 'secret/data/cli')).status, 200);
    const strict = await runCli(['audit', 'verify', fileLog]);
    assert.equal(strict.code, 1);
    const partial = await runCli(['audit', 'verify', '--partial', fileLog]);
    assert.equal(partial.code, 0, partial.stderr);
    const whole = verifyAuditLog(readFileSync(rotated, 'utf8') + readFileSync(fileLog, 'utf8'));
    assert.equal(whole.ok, true, whole.message);
    assert.equal((await runCli(['audit', 'verify', rotated])).code, 0);
  });
});

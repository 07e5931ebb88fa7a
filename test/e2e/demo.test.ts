import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BIN, ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { eventually } from '../helpers/wait.js';

// `aegis demo` as a user runs it: one real process that starts a dev server and three proxies of its own,
// narrates the three steps and stops everything.

const DEMO_MS = 90_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `aegis demo …`, killed (and failed) if it is still running after `ms`. */
function demo(args: string[], ms = DEMO_MS): Promise<Run> {
  return new Promise((resolveRun) => {
    const env = { ...process.env, AEGIS_ADDR: undefined, AEGIS_TOKEN: undefined, AEGIS_CACERT: undefined };
    const proc = spawn(process.execPath, [BIN, 'demo', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => proc.kill('SIGTERM'), ms);
    proc.on('close', (code, signal) => { clearTimeout(timer); resolveRun({ code, signal, stdout, stderr }); });
  });
}

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

describe('aegis demo', () => {
  it('shows an allowed chain, a denial and a revocation cutting a live connection, then leaves nothing running', { timeout: DEMO_MS + 30_000 }, async () => {
    const r = await demo([]);
    assert.equal(r.code, 0, `exit ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
    const out = r.stdout;

    // Step 1: one curl, the whole chain through the mesh.
    assert.match(out, /\$ curl http:\/\/127\.0\.0\.1:\d+\/\n\s+web → api → db\n/);
    // Step 2: web → db refused by db's proxy (counted there), and intention check says why.
    assert.match(out, /\$ curl http:\/\/127\.0\.0\.1:\d+\/db\n\s+web → db failed: .*\(HTTP 502\)\n/);
    assert.match(out, /denied: 0 → 1/);
    assert.match(out, /intention check web db\n\s+Denied\n.*default deny/);
    // Step 3: the live stream was cut, by db's proxy, within the bound.
    assert.match(out, /tick 1\n\s+tick 2\n\s+tick 3\n/);
    const cut = /The stream was cut (\d+) ms after the revocation/.exec(out);
    assert.ok(cut, out);
    assert.ok(Number(cut[1]) <= 2_000, `cut after ${cut[1]} ms`);
    assert.match(out, /cut: 0 → 1/);
    assert.match(out, /Summary\n\s+1\. allowed.*\n\s+2\. denied.*\n\s+3\. revoked/);
    assert.match(out, /Stopping the proxies and the dev server\.\.\. done/);
    assert.equal(r.stderr, '');

    // Every child it printed is gone, and so is its temporary data dir.
    const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    assert.equal(pids.length, 4, out); // the dev server and three proxies
    assert.ok(await eventually(() => pids.every(gone), 2_000), `still running: ${pids.filter((p) => !gone(p)).join(', ')}`);
    const dataDir = /data in (\S+?),? removed at the end/.exec(out)?.[1];
    assert.ok(dataDir, out);
    assert.equal(existsSync(dataDir), false, `${dataDir} was left behind`);
  });

  it('refuses a --data-dir whose parent does not exist: exit 2, one line, nothing started', async () => {
    const r = await demo(['--data-dir', '/nonexistent/deep/x'], 30_000);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^Error: --data-dir \/nonexistent\/deep\/x: its parent folder \/nonexistent\/deep does not exist\n$/);
  });

  it('refuses a --data-dir that is not empty (an earlier run\'s revocations would break this one)', async () => {
    const dir = tempDir('demo-used');
    writeFileSync(join(dir, 'something'), 'x');
    const r = await demo(['--data-dir', dir], 30_000);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /not empty/);
  });
});

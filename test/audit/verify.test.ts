import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainLine, parseLine } from '../../src/audit/chain.js';
import { verifyAuditLog, type VerifyResult } from '../../src/audit/verify.js';
import { makeCore } from '../helpers/core.js';
import { runCli } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { enableFileDevice, fileLines, joinLines } from './audit-log.js';

// A log written by the real broker: a core with a file device, then a mix of requests.
let log: string[] = [];
let dir = '';

before(async () => {
  const t = await makeCore();
  dir = t.dir;
  const file = join(t.dir, 'audit.log');
  await enableFileDevice(t, 'file', file);
  assert.equal((await t.call('update', 'secret/data/app', { data: { password: 'hunter2' } })).status, 200);
  assert.equal((await t.call('read', 'secret/data/app')).status, 200);
  assert.equal((await t.call('update', 'secret/data/db', { data: { password: 'letmein' } })).status, 200);
  assert.equal((await t.call('list', 'secret/metadata/')).status, 200);
  assert.equal((await t.call('read', 'secret/data/app', {}, null)).status, 403);
  assert.equal((await t.call('update', 'auth/token/create', { policies: ['default'] })).status, 200);
  assert.equal((await t.call('read', 'secret/data/db')).status, 200);
  log = fileLines(file);
});

function check(lines: string[], opts: { partial?: boolean } = {}): VerifyResult {
  return verifyAuditLog(joinLines(lines), opts);
}

function problemAt(r: VerifyResult): { ok: boolean; line?: number; problem?: string } {
  return { ok: r.ok, line: r.line, problem: r.problem };
}

/** The 1-based number of the first line whose request path is `path`. */
function lineWithPath(path: string, from = 1): number {
  const i = log.findIndex((l, idx) => idx + 1 >= from && l.includes(`"path":"${path}"`));
  assert.ok(i >= 0, `no line with path ${path}`);
  return i + 1;
}

describe('verify on a log written by the audit broker', () => {
  it('an untouched broker-written log verifies, counting every line', () => {
    assert.ok(log.length >= 13, `expected at least 13 lines, got ${log.length}`);
    const r = check(log);
    assert.deepEqual({ ok: r.ok, lines: r.lines }, { ok: true, lines: log.length }, r.message);
  });

  it('an edited line (a request path changed to hide what was read) is named by number as edited', () => {
    const n = lineWithPath('secret/data/db', 4);
    const x = [...log];
    x[n - 1] = x[n - 1]!.replace('"path":"secret/data/db"', '"path":"secret/data/xx"');
    assert.notEqual(x[n - 1], log[n - 1]);
    assert.deepEqual(problemAt(check(x)), { ok: false, line: n, problem: 'edited' });
  });

  it('an edited error field (a denial made to look like success) is named as edited', () => {
    const n = log.findIndex((l) => l.includes('"error":"permission denied')) + 1;
    assert.ok(n > 0);
    const x = [...log];
    x[n - 1] = x[n - 1]!.replace(/,"error":"[^"]*"/, '');
    assert.deepEqual(problemAt(check(x)), { ok: false, line: n, problem: 'edited' });
  });

  it('a deleted middle line is reported at the line after the gap as deleted', () => {
    const x = [...log];
    x.splice(5, 1); // removes line 6
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 6, problem: 'deleted' });
    assert.match(check(x).message, /^line 6: .*seq 6 missing/);
  });

  it('several deleted lines are reported at the line after the gap, naming the missing range', () => {
    const x = [...log];
    x.splice(3, 3); // removes lines 4..6
    const r = check(x);
    assert.deepEqual(problemAt(r), { ok: false, line: 4, problem: 'deleted' });
    assert.match(r.message, /seq 4\.\.6 missing/);
  });

  it('deleting the first line is reported at line 1 (the log does not start the chain)', () => {
    assert.deepEqual(problemAt(check(log.slice(1))), { ok: false, line: 1, problem: 'truncated-start' });
  });

  it('a copied (replayed) line is named as inserted, with the line it copies', () => {
    const x = [...log];
    x.splice(8, 0, log[2]!); // a copy of line 3 becomes line 9
    const r = check(x);
    assert.deepEqual(problemAt(r), { ok: false, line: 9, problem: 'inserted' });
    assert.match(r.message, /a copy of line 3/);
  });

  it('a copy placed before its original is named at the copy, not at the original', () => {
    const x = [...log];
    x.splice(1, 0, log[6]!); // a copy of line 7 becomes line 2
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 2, problem: 'inserted' });
  });

  it('a forged line with a recomputed hash chained to its predecessor is named at the forged line', () => {
    const before = log[4]!; // forged after line 5
    const p = parseLine(before)!;
    const template = JSON.parse(log[5]!) as Record<string, unknown>;
    delete template.seq; delete template.prev_hash; delete template.hash;
    const forged = chainLine({ seq: p.seq, hash: p.hash }, { ...template, request: { ...(template.request as object), path: 'secret/data/alibi' } }).line.trimEnd();
    assert.equal(parseLine(forged)?.intact, true, 'the forged line must carry a valid hash of its own');
    const x = [...log];
    x.splice(5, 0, forged);
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 6, problem: 'inserted' });
  });

  it('a line replaced by one with a recomputed hash is named as edited at the replaced line', () => {
    const p = parseLine(log[6]!)!;
    const x = [...log];
    x[7] = chainLine({ seq: p.seq, hash: p.hash }, { type: 'request', request: { path: 'secret/data/nothing-to-see' } }).line.trimEnd();
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 8, problem: 'edited' });
  });

  it('two swapped adjacent lines are named as reordered at the first of them', () => {
    const x = [...log];
    [x[9], x[10]] = [x[10]!, x[9]!];
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 10, problem: 'reordered' });
  });

  it('a truncated line is named as malformed', () => {
    const x = [...log];
    x[6] = x[6]!.slice(0, Math.floor(x[6]!.length / 2));
    assert.deepEqual(problemAt(check(x)), { ok: false, line: 7, problem: 'malformed' });
  });

  it('--partial accepts the tail of the log (a file that starts mid-chain) and still catches tampering in it', () => {
    const tail = log.slice(5);
    assert.equal(check(tail, { partial: true }).ok, true);
    assert.deepEqual(problemAt(check(tail)), { ok: false, line: 1, problem: 'truncated-start' });
    const x = [...tail];
    x.splice(3, 1);
    assert.deepEqual(problemAt(check(x, { partial: true })), { ok: false, line: 4, problem: 'deleted' });
  });
});

describe('aegis audit verify (the real CLI, offline)', () => {
  let files: { intact: string; tampered: string; tail: string; tailTampered: string };

  before(() => {
    const d = tempDir('verify-cli');
    const edited = [...log];
    edited[6] = edited[6]!.replace('"operation":"', '"operation":"x');
    const tailEdited = log.slice(4);
    tailEdited.splice(2, 1);
    files = { intact: join(d, 'intact.log'), tampered: join(d, 'tampered.log'), tail: join(d, 'tail.log'), tailTampered: join(d, 'tail-tampered.log') };
    writeFileSync(files.intact, joinLines(log));
    writeFileSync(files.tampered, joinLines(edited));
    writeFileSync(files.tail, joinLines(log.slice(4)));
    writeFileSync(files.tailTampered, joinLines(tailEdited));
  });

  it('exits 0 and says OK with the entry count for an intact file', async () => {
    const r = await runCli(['audit', 'verify', files.intact]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`OK: .*${log.length} entries, chain intact`));
  });

  it('exits 1 for a tampered file and names the line on stderr', async () => {
    const r = await runCli(['audit', 'verify', files.tampered]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /line 7: edited/);
    assert.doesNotMatch(r.stdout, /OK/);
  });

  it('refuses a rotated tail without --partial, accepts it with --partial, and still catches a deletion in it', async () => {
    const strict = await runCli(['audit', 'verify', files.tail]);
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /line 1: .*--partial/);
    const partial = await runCli(['audit', 'verify', '--partial', files.tail]);
    assert.equal(partial.code, 0, partial.stderr);
    const tampered = await runCli(['audit', 'verify', '--partial', files.tailTampered]);
    assert.equal(tampered.code, 1);
    assert.match(tampered.stderr, /line 3: entries deleted/);
  });

  it('prints the result as JSON with --format json (line and problem for scripts)', async () => {
    const r = await runCli(['audit', 'verify', '--format', 'json', files.tampered]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout) as VerifyResult;
    assert.deepEqual({ ok: out.ok, line: out.line, problem: out.problem }, { ok: false, line: 7, problem: 'edited' });
  });

  it('fails with a message (not a stack trace) when the file cannot be read', async () => {
    const r = await runCli(['audit', 'verify', join(dir, 'no-such.log')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot read .*no-such\.log: ENOENT/);
    assert.doesNotMatch(r.stderr, /    at /);
  });
});

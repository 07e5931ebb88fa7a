import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import { chainLine, GENESIS, parseLine, type ChainState } from '../../src/audit/chain.js';
import { verifyAuditLog, type VerifyResult } from '../../src/audit/verify.js';
import { makeCore } from '../helpers/core.js';
import { enableFileDevice, fileLines, joinLines } from './audit-log.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** A synthetic chain of n lines built by the real chain code (no trailing newlines). */
function chain(n: number, tag = 'e'): string[] {
  let state: ChainState = { seq: 0, hash: GENESIS };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const { line, next } = chainLine(state, { type: 'request', request: { path: `secret/data/${tag}/${i + 1}` } });
    out.push(line.slice(0, -1));
    state = next;
  }
  return out;
}

/** A line an attacker forges with a correct hash, continuing the chain from `after` (null: from the start). */
function forgeAfter(after: string | null, path = 'secret/data/forged'): string {
  const state: ChainState = after ? { seq: parseLine(after)!.seq, hash: parseLine(after)!.hash } : { seq: 0, hash: GENESIS };
  return chainLine(state, { type: 'request', request: { path } }).line.slice(0, -1);
}

function check(lines: string[], opts: { partial?: boolean } = {}): VerifyResult {
  return verifyAuditLog(joinLines(lines), opts);
}

describe('the hash chain line format', () => {
  let lines: string[] = [];

  before(async () => {
    const t = await makeCore();
    const file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    for (let i = 0; i < 3; i++) assert.equal((await t.call('update', `secret/data/fmt/${i}`, { data: { v: `value-${i}` } })).status, 200);
    assert.equal((await t.call('read', 'secret/data/fmt/0')).status, 200);
    lines = fileLines(file);
  });

  it('numbers the lines written by the broker 1..N and starts the chain at the genesis hash (64 zeros)', () => {
    assert.ok(lines.length >= 9, `expected at least 9 lines, got ${lines.length}`);
    const parsed = lines.map((l) => JSON.parse(l) as { seq: number; prev_hash: string });
    assert.deepEqual(parsed.map((p) => p.seq), lines.map((_, i) => i + 1));
    assert.equal(parsed[0]!.prev_hash, '0'.repeat(64));
  });

  it("stores in each line the sha256 of the line's exact bytes before ,\"hash\" and links each line to the previous hash", () => {
    let prev = '0'.repeat(64);
    for (const [i, line] of lines.entries()) {
      const m = /^(.*),"hash":"([0-9a-f]{64})"\}$/.exec(line);
      assert.ok(m, `line ${i + 1} does not end with the hash field`);
      assert.equal(m[2], sha256(`${m[1]}}`), `line ${i + 1}: stored hash is not the sha256 of its body`);
      assert.equal((JSON.parse(line) as { prev_hash: string }).prev_hash, prev, `line ${i + 1} does not link to line ${i}`);
      prev = m[2]!;
    }
  });

  it('parseLine reports an edited body as not intact and a non-entry as null', () => {
    const line = lines[1]!;
    assert.equal(parseLine(line)?.intact, true);
    const edited = line.replace('"type":"', '"type":"x');
    assert.notEqual(edited, line);
    assert.equal(parseLine(edited)?.intact, false);
    assert.equal(parseLine(line.slice(0, -10)), null);
    assert.equal(parseLine('not json,"hash":"' + 'a'.repeat(64) + '"}'), null);
  });

  it('hashes the UTF-8 bytes of non-ASCII entries (multi-byte characters, emoji) and they verify', () => {
    let state: ChainState = { seq: 0, hash: GENESIS };
    const out: string[] = [];
    for (const path of ['secret/data/café', 'secret/data/€uro/😀', 'secret/data/plain']) {
      const { line, next } = chainLine(state, { type: 'request', request: { path } });
      const body = line.slice(0, line.lastIndexOf(',"hash":')) + '}';
      assert.equal(next.hash, sha256(body), 'the hash covers the exact UTF-8 body');
      assert.equal(JSON.parse(line).request.path, path, 'the line is whole, no character cut');
      out.push(line.slice(0, -1));
      state = next;
    }
    assert.equal(check(out).ok, true);
  });

  it('the broker-written log verifies', () => {
    const r = check(lines);
    assert.equal(r.ok, true, r.message);
    assert.equal(r.lines, lines.length);
  });
});

// Every single tampering an attacker might try on a log of n lines, with the line and problem verify must name.
type Tamper =
  | { kind: 'edit'; k: number }
  | { kind: 'delete'; k: number; count: number }
  | { kind: 'copy'; j: number; at: number }
  | { kind: 'forge'; at: number }
  | { kind: 'forge-random'; at: number; seq: number }
  | { kind: 'replace'; k: number }
  | { kind: 'move'; from: number; to: number }
  | { kind: 'truncate'; k: number; keep: number };

function apply(lines: string[], t: Tamper): { lines: string[]; line: number; problem: VerifyResult['problem'] } {
  const x = [...lines];
  switch (t.kind) {
    case 'edit':
      x[t.k - 1] = x[t.k - 1]!.replace('"path":"', '"path":"tampered/');
      return { lines: x, line: t.k, problem: 'edited' };
    case 'delete':
      x.splice(t.k - 1, t.count);
      return { lines: x, line: t.k, problem: t.k === 1 ? 'truncated-start' : 'deleted' };
    case 'copy':
      // A copy standing exactly where the original belongs is indistinguishable from it: the original (now one
      // line further down) is then the extra one.
      x.splice(t.at - 1, 0, lines[t.j - 1]!);
      return { lines: x, line: t.at === t.j ? t.j + 1 : t.at, problem: 'inserted' };
    case 'forge':
      x.splice(t.at - 1, 0, forgeAfter(t.at === 1 ? null : lines[t.at - 2]!));
      return { lines: x, line: t.at, problem: 'inserted' };
    case 'forge-random': {
      const forged = chainLine({ seq: t.seq - 1, hash: sha256(`attacker-${t.seq}`) }, { type: 'request', request: { path: 'secret/data/forged' } }).line.slice(0, -1);
      x.splice(t.at - 1, 0, forged);
      return { lines: x, line: t.at, problem: 'inserted' };
    }
    case 'replace':
      x[t.k - 1] = forgeAfter(t.k === 1 ? null : lines[t.k - 2]!);
      return { lines: x, line: t.k, problem: 'edited' };
    case 'move': {
      const [moved] = x.splice(t.from - 1, 1);
      x.splice(t.to - 1, 0, moved!);
      return { lines: x, line: Math.min(t.from, t.to), problem: 'reordered' };
    }
    case 'truncate':
      x[t.k - 1] = x[t.k - 1]!.slice(0, t.keep);
      return { lines: x, line: t.k, problem: 'malformed' };
  }
}

function tamperFor(n: number): fc.Arbitrary<Tamper> {
  const line = fc.integer({ min: 1, max: n });
  // Removing or replacing the very last line cannot be seen from the file alone (see the last-line tests).
  const notLast = fc.integer({ min: 1, max: n - 1 });
  return fc.oneof(
    line.map((k): Tamper => ({ kind: 'edit', k })),
    notLast.chain((k) => fc.integer({ min: 1, max: n - k }).map((count): Tamper => ({ kind: 'delete', k, count }))),
    fc.tuple(line, fc.integer({ min: 1, max: n + 1 })).map(([j, at]): Tamper => ({ kind: 'copy', j, at })),
    line.map((at): Tamper => ({ kind: 'forge', at })),
    fc.tuple(line, fc.integer({ min: 1, max: n + 5 })).map(([at, seq]): Tamper => ({ kind: 'forge-random', at, seq })),
    notLast.map((k): Tamper => ({ kind: 'replace', k })),
    fc.tuple(line, line).filter(([a, b]) => a !== b).map(([from, to]): Tamper => ({ kind: 'move', from, to })),
    line.chain((k) => fc.integer({ min: 0, max: 200 }).map((keep): Tamper => ({ kind: 'truncate', k, keep }))),
  );
}

describe('verify names the first tampered line and the kind of tampering', () => {
  it('for every single edit, deletion, copy, forged insertion, replacement, move or truncation of a line', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 20 }).chain((n) => fc.tuple(fc.constant(n), tamperFor(n))), ([n, tamper]) => {
        const lines = chain(n);
        const t = apply(lines, tamper);
        const r = check(t.lines);
        assert.equal(r.ok, false, `${JSON.stringify(tamper)} went unnoticed`);
        assert.deepEqual({ line: r.line, problem: r.problem }, { line: t.line, problem: t.problem }, `${JSON.stringify(tamper)}: ${r.message}`);
        assert.match(r.message, new RegExp(`^line ${t.line}: `));
      }),
      { numRuns: 400 },
    );
  });

  it('with --partial, for the same tampering inside the tail of a log (after its first line)', () => {
    const arb = fc.integer({ min: 3, max: 20 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 2, max: 30 }), tamperFor(n)));
    fc.assert(
      fc.property(arb, ([n, start, tamper]) => {
        // The tail of a longer log (lines start..start+n-1); its first line is what --partial trusts.
        const tail = chain(start + n + 3).slice(start - 1, start - 1 + n);
        const t = apply(tail, tamper);
        fc.pre(t.line > 1 && !(tamper.kind === 'move' && (tamper.from === 1 || tamper.to === 1)) && !(tamper.kind === 'copy' && tamper.at === 1));
        const r = check(t.lines, { partial: true });
        assert.equal(r.ok, false, `${JSON.stringify(tamper)} went unnoticed`);
        assert.deepEqual({ line: r.line, problem: r.problem }, { line: t.line, problem: t.problem }, `${JSON.stringify(tamper)}: ${r.message}`);
      }),
      { numRuns: 300 },
    );
  });

  it('accepts any untouched tail with --partial, and without it reports the missing start at line 1', () => {
    const full = chain(12);
    for (let start = 2; start <= full.length; start++) {
      const tail = full.slice(start - 1);
      assert.equal(check(tail, { partial: true }).ok, true, `tail from line ${start}`);
      const strict = check(tail);
      assert.deepEqual({ ok: strict.ok, line: strict.line, problem: strict.problem }, { ok: false, line: 1, problem: 'truncated-start' });
    }
  });

  it('a line forged at the very start with a genesis prev_hash is named at line 1, not at the genuine first line', () => {
    const lines = chain(5);
    const r = check([forgeAfter(null), ...lines]);
    assert.deepEqual({ line: r.line, problem: r.problem }, { line: 1, problem: 'inserted' });
  });

  it('removing or forging the last line cannot be seen from the file alone (the chain has no external anchor)', () => {
    // Documents a limit of an unkeyed hash chain: the newest entries can be cut, or extended with forged ones.
    const lines = chain(6);
    assert.equal(check(lines.slice(0, -1)).ok, true);
    assert.equal(check([...lines, forgeAfter(lines.at(-1)!)]).ok, true);
  });

  it('an empty file verifies with 0 entries; a blank line inside a log is malformed', () => {
    assert.deepEqual({ ok: check([]).ok, lines: check([]).lines }, { ok: true, lines: 0 });
    const lines = chain(4);
    const r = check([...lines.slice(0, 2), '', ...lines.slice(2)]);
    assert.deepEqual({ line: r.line, problem: r.problem }, { line: 3, problem: 'malformed' });
  });
});

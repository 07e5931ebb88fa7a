import { GENESIS, parseLine, type ParsedLine } from './chain.js';

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based line number of the first problem. */
  line?: number;
  problem?: 'edited' | 'deleted' | 'inserted' | 'reordered' | 'malformed' | 'truncated-start';
  message: string;
  /** Lines skipped as entries cut short by a crash (the chain continues across them). */
  torn: number[];
}

/**
 * Walks a hash-chained audit log and names the first line that breaks it: edited (its hash no longer matches its
 * content), deleted (a gap in the sequence), inserted (a line the chain does not reach) or reordered.
 * `partial` trusts the first line as the anchor (a file that starts after log rotation).
 */
export function verifyAuditLog(text: string, opts: { partial?: boolean } = {}): VerifyResult {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const parsed: (ParsedLine | null)[] = lines.map(parseLine);
  const lineOfSeq = new Map<number, number>();
  // Chained lines so far by hash; 0 stands for the start of the chain (genesis, or the --partial anchor).
  const lineOfHash = new Map<string, number>();
  // Every line carrying each hash, and every line naming each predecessor: to tell a copy or a forged line
  // (not part of the chain) from a moved one.
  const linesOfHash = new Map<string, number[]>();
  const linesOfPrev = new Map<string, number[]>();
  const add = (m: Map<string, number[]>, k: string, n: number) => {
    const l = m.get(k);
    if (l) l.push(n);
    else m.set(k, [n]);
  };
  parsed.forEach((p, i) => {
    if (!p) return;
    if (!lineOfSeq.has(p.seq)) lineOfSeq.set(p.seq, i + 1);
    add(linesOfHash, p.hash, i + 1);
    add(linesOfPrev, p.prev, i + 1);
  });
  const torn: number[] = [];
  const fail = (line: number, problem: VerifyResult['problem'], message: string): VerifyResult => ({ ok: false, lines: lines.length, line, problem, message: `line ${line}: ${message}`, torn });

  let expectSeq = 1;
  let expectPrev = GENESIS;
  if (!opts.partial) lineOfHash.set(GENESIS, 0);
  // A line whose predecessor is in the file (or is the start of the chain) belongs to this chain somewhere.
  const belongs = (p: ParsedLine) => linesOfHash.has(p.prev) || lineOfHash.get(p.prev) === 0;
  for (let i = 0; i < parsed.length; i++) {
    const n = i + 1;
    const p = parsed[i];
    if (!p) {
      // A crash mid-write leaves the start of an entry; the restarted server continues the chain from the line
      // before it. Such a remnant holds nothing the chain depends on, so it is reported, not failed. A cut line
      // that the next line does not skip over (truncation of a real entry) still fails.
      const next = parsed[i + 1];
      if (lines[i]!.startsWith('{"seq":') && next && next.seq === expectSeq && next.prev === expectPrev) {
        torn.push(n);
        continue;
      }
      return fail(n, 'malformed', 'not an audit entry (edited or corrupted)');
    }
    if (!p.intact) return fail(n, 'edited', 'edited: its content does not match its hash');
    if (i === 0 && opts.partial) {
      expectSeq = p.seq;
      expectPrev = p.prev;
      lineOfHash.set(p.prev, 0);
    }
    if (p.seq === expectSeq && p.prev === expectPrev) {
      lineOfHash.set(p.hash, n);
      expectSeq++;
      expectPrev = p.hash;
      continue;
    }
    const dup = lineOfHash.get(p.hash);
    if (dup !== undefined && dup > 0) return fail(n, 'inserted', `inserted: a copy of line ${dup}`);
    // A copy of a line further down: the original stands later, in its place in the chain.
    const original = linesOfHash.get(p.hash)!.find((l) => l > n);
    if (original !== undefined) return fail(n, 'inserted', `inserted: a copy of line ${original}`);
    // This line chains to an earlier line than its predecessor: the lines in between are not part of the chain.
    const anchor = lineOfHash.get(p.prev);
    if (anchor !== undefined && anchor < n - 1) {
      return fail(anchor + 1, 'inserted', `inserted: not part of the chain (line ${n} ${anchor === 0 ? 'is the start of the chain' : `follows line ${anchor} directly`})`);
    }
    if (p.seq > expectSeq) {
      const at = lineOfSeq.get(expectSeq);
      if (at !== undefined && at > n) {
        if (!belongs(p)) return fail(n, 'inserted', `inserted: not part of the chain (no line has its prev_hash; seq ${expectSeq} is at line ${at})`);
        return fail(n, 'reordered', `out of order: entry seq ${p.seq} stands before seq ${expectSeq} (line ${at})`);
      }
      if (i === 0) {
        return fail(n, 'truncated-start', `the log does not start at the beginning of the chain (first seq is ${p.seq}); entries were deleted from the top, or pass --partial for a rotated file`);
      }
      return fail(n, 'deleted', `entries deleted before this line (seq ${expectSeq}${p.seq - 1 > expectSeq ? `..${p.seq - 1}` : ''} missing)`);
    }
    if (p.seq < expectSeq) {
      if (!belongs(p)) return fail(n, 'inserted', 'inserted: not part of the chain (no line has its prev_hash)');
      return fail(n, 'reordered', `out of order: entry seq ${p.seq} after seq ${expectSeq - 1}`);
    }
    // Right sequence number, wrong predecessor. If a later line continues the chain, this one was inserted;
    // otherwise the previous line was replaced by one with a recomputed hash.
    if ((linesOfPrev.get(expectPrev) ?? []).some((l) => l > n)) return fail(n, 'inserted', 'inserted: not part of the chain (a later line continues the chain from its predecessor)');
    return i === 0 ? fail(n, 'edited', 'does not start the chain (its prev_hash is not the genesis hash)') : fail(n - 1, 'edited', `replaced: line ${n} chains to a different entry`);
  }
  const entries = lines.length - torn.length;
  const note = torn.length ? `; skipped ${torn.length} entr${torn.length === 1 ? 'y' : 'ies'} cut short by a crash (line ${torn.join(', ')})` : '';
  return { ok: true, lines: lines.length, message: `${entries} entries, chain intact${note}`, torn };
}

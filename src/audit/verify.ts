import { GENESIS, parseLine, type ParsedLine } from './chain.js';

export interface VerifyResult {
  ok: boolean;
  lines: number;
  /** 1-based line number of the first problem. */
  line?: number;
  problem?: 'edited' | 'deleted' | 'inserted' | 'reordered' | 'malformed' | 'truncated-start';
  message: string;
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
  const lineOfHash = new Map<string, number>();
  parsed.forEach((p, i) => {
    if (p && !lineOfSeq.has(p.seq)) lineOfSeq.set(p.seq, i + 1);
  });
  const fail = (line: number, problem: VerifyResult['problem'], message: string): VerifyResult => ({ ok: false, lines: lines.length, line, problem, message: `line ${line}: ${message}` });

  let expectSeq = 1;
  let expectPrev = GENESIS;
  for (let i = 0; i < parsed.length; i++) {
    const n = i + 1;
    const p = parsed[i];
    if (!p) return fail(n, 'malformed', 'not an audit entry (edited or corrupted)');
    if (!p.intact) return fail(n, 'edited', 'edited: its content does not match its hash');
    if (i === 0 && opts.partial) {
      expectSeq = p.seq;
      expectPrev = p.prev;
    }
    if (p.seq === expectSeq && p.prev === expectPrev) {
      lineOfHash.set(p.hash, n);
      expectSeq++;
      expectPrev = p.hash;
      continue;
    }
    if (i === 0 && p.seq > 1) {
      return fail(n, 'truncated-start', `the log does not start at the beginning of the chain (first seq is ${p.seq}); entries were deleted from the top, or pass --partial for a rotated file`);
    }
    const dup = lineOfHash.get(p.hash);
    if (dup !== undefined) return fail(n, 'inserted', `inserted: a copy of line ${dup}`);
    // This line chains to an earlier line than its predecessor: the lines in between are not part of the chain.
    const anchor = lineOfHash.get(p.prev);
    if (anchor !== undefined && anchor < n - 1) return fail(anchor + 1, 'inserted', `inserted: not part of the chain (line ${n} follows line ${anchor} directly)`);
    if (p.seq > expectSeq) {
      const at = lineOfSeq.get(expectSeq);
      if (at !== undefined && at > n) return fail(n, 'reordered', `out of order: entry seq ${p.seq} stands before seq ${expectSeq} (line ${at})`);
      return fail(n, 'deleted', `entries deleted before this line (seq ${expectSeq}${p.seq - 1 > expectSeq ? `..${p.seq - 1}` : ''} missing)`);
    }
    if (p.seq < expectSeq) return fail(n, 'reordered', `out of order: entry seq ${p.seq} after seq ${expectSeq - 1}`);
    // Right sequence number, wrong predecessor: the previous line was replaced by one with a recomputed hash.
    return i === 0 ? fail(n, 'edited', 'does not start the chain (its prev_hash is not the genesis hash)') : fail(n - 1, 'edited', `replaced: line ${n} chains to a different entry`);
  }
  return { ok: true, lines: lines.length, message: `${lines.length} entries, chain intact` };
}

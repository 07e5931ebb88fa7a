import { hash as digest } from 'node:crypto';

// One audit line = one JSON object: {"seq":N,"prev_hash":"<hash of line N-1>", ...entry, "hash":"<sha256 of this line without hash>"}.
// The hash is computed over the exact bytes before `,"hash":...`, so a verifier never has to re-serialise JSON.
export const GENESIS = '0'.repeat(64);
const HASH_TAIL = /,"hash":"([0-9a-f]{64})"\}$/;

export interface ChainState {
  seq: number;
  hash: string;
}

const TAIL = Buffer.from(',"hash":"');

/** The next line of a chain, as the bytes written: the body is serialised once, hashed and copied once. */
export function chainBytes(state: ChainState, entry: Record<string, unknown>): { line: Buffer; next: ChainState } {
  const seq = state.seq + 1;
  const body = JSON.stringify({ seq, prev_hash: state.hash, ...entry });
  // One-shot hashing: no Hash object, so nothing for the young-generation GC to finalise per line.
  const hash = digest('sha256', body, 'hex');
  // body without its closing brace + ,"hash":"<64 hex>"}\n
  const bodyLength = Buffer.byteLength(body);
  const line = Buffer.allocUnsafe(bodyLength - 1 + TAIL.length + 64 + 3);
  let off = line.write(body, 0, bodyLength - 1, 'utf8');
  off += TAIL.copy(line, off);
  off += line.write(hash, off, 'latin1');
  line.write('"}\n', off, 'latin1');
  return { line, next: { seq, hash } };
}

export function chainLine(state: ChainState, entry: Record<string, unknown>): { line: string; next: ChainState } {
  const { line, next } = chainBytes(state, entry);
  return { line: line.toString('utf8'), next };
}

export interface ParsedLine {
  seq: number;
  prev: string;
  hash: string;
  /** The recomputed hash matches the stored one. */
  intact: boolean;
}

/** Parses one line; null when it is not an audit entry at all. */
export function parseLine(line: string): ParsedLine | null {
  const m = HASH_TAIL.exec(line);
  if (!m) return null;
  const body = `${line.slice(0, m.index)}}`;
  let obj: { seq?: unknown; prev_hash?: unknown };
  try {
    obj = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof obj.seq !== 'number' || typeof obj.prev_hash !== 'string') return null;
  const hash = m[1]!;
  return { seq: obj.seq, prev: obj.prev_hash, hash, intact: digest('sha256', body, 'hex') === hash };
}

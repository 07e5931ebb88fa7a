import { createHmac } from 'node:crypto';

export function hmacValue(key: Buffer, value: string): string {
  return `hmac-sha256:${createHmac('sha256', key).update(value).digest('hex')}`;
}

/**
 * Replaces every string and number inside `value` by its HMAC, except top-level keys listed in `plain`
 * (`*` = the route returns nothing secret: log it all in clear).
 * Redaction is the default, so a field nobody thought to declare never reaches the log in clear.
 */
export function redact(key: Buffer, value: unknown, plain: ReadonlySet<string> = EMPTY, reuse?: RedactionReuse): unknown {
  if (plain.has('*')) return value;
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) return redactDeep(key, value);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = plain.has(k) ? v : reuse ? reused(reuse, k, () => redactDeep(key, v)) : redactDeep(key, v);
  }
  return out;
}

/**
 * A device's redacted fields of responses whose data has a stable name (`Response.auditDataId`): a secret read
 * again costs a map lookup instead of an HMAC per value. It holds HMACs only — what the log holds anyway.
 */
export type RedactionMemo = Map<string, unknown>;
export interface RedactionReuse {
  memo: RedactionMemo;
  id: string;
}
const REDACTION_MEMO_MAX = 10_000;

function reused(reuse: RedactionReuse, field: string, redact: () => unknown): unknown {
  const name = `${reuse.id}\u0000${field}`;
  const known = reuse.memo.get(name);
  if (known !== undefined) return known;
  const redacted = redact();
  if (reuse.memo.size >= REDACTION_MEMO_MAX) reuse.memo.delete(reuse.memo.keys().next().value!);
  reuse.memo.set(name, redacted);
  return redacted;
}

const EMPTY: ReadonlySet<string> = new Set();

function redactDeep(key: Buffer, value: unknown): unknown {
  if (typeof value === 'string') return hmacValue(key, value);
  if (typeof value === 'number' || typeof value === 'bigint') return hmacValue(key, String(value));
  if (Array.isArray(value)) return value.map((v) => redactDeep(key, v));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = redactDeep(key, v);
    return out;
  }
  return value;
}

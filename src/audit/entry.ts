import type { AuthResult, Caller, Request, Response } from '../core/request.js';
import { hmacValue, redact, type RedactionMemo } from './hmac.js';

export interface AuditRecord {
  type: 'request' | 'response';
  req: Request;
  caller: Caller | null;
  /** Top-level data fields the route declared safe to log in clear. */
  plain: ReadonlySet<string>;
  mountType?: string;
  error?: string;
  status?: number;
  response?: Response;
}

/** Per-device memo of the HMACs of authenticated callers' tokens and accessors (keyed by token HMAC, never by token). */
export type HmacMemo = Map<string, string>;
const MEMO_MAX = 10_000;

function memoized(memo: HmacMemo | undefined, id: string, compute: () => string): string {
  if (!memo) return compute();
  let v = memo.get(id);
  if (v === undefined) {
    if (memo.size >= MEMO_MAX) memo.clear();
    v = compute();
    memo.set(id, v);
  }
  return v;
}

/** The logged form of a record under one device's HMAC key: tokens, accessors and values only as HMACs. */
export function formatRecord(r: AuditRecord, key: Buffer, memo?: HmacMemo, redactions?: RedactionMemo): Record<string, unknown> {
  const c = r.caller;
  const tokenHmac = c ? memoized(memo, `t${c.tokenHash}`, () => hmacValue(key, c.token)) : null;
  const entry: Record<string, unknown> = {
    time: new Date().toISOString(),
    type: r.type,
    auth: c ? callerAuth(c, tokenHmac!, memoized(memo, `a${c.tokenHash}`, () => hmacValue(key, c.accessor)), key) : null,
    request: {
      id: r.req.id,
      operation: r.req.operation,
      path: r.req.path,
      mount_type: r.mountType ?? null,
      // An authenticated caller was resolved from this very token, so its memoised HMAC is the token's.
      client_token: c ? tokenHmac : r.req.token ? hmacValue(key, r.req.token) : null,
      remote_address: r.req.client.address,
      data: redact(key, r.req.data, r.plain),
      wrap_ttl: r.req.wrapTTL ?? null,
    },
  };
  if (r.type === 'response') {
    const res = r.response;
    entry.response = {
      status: r.status ?? null,
      data: res?.data ? redact(key, res.data, r.plain, redactions && res.auditDataId ? { memo: redactions, id: res.auditDataId } : undefined) : res?.bare ? redact(key, res.bare, r.plain) : null,
      auth: res?.auth ? resultAuth(res.auth, key) : null,
      // Lease IDs are references, not secrets (Vault logs them in clear): what matters is who got which lease.
      wrap_info: res?.wrapInfo
        ? { token: hmacValue(key, res.wrapInfo.token), accessor: hmacValue(key, res.wrapInfo.accessor), ttl: res.wrapInfo.ttl, creation_path: res.wrapInfo.creation_path }
        : null,
      secret: res?.lease ? { lease_id: res.lease.id, lease_duration: res.lease.duration, renewable: res.lease.renewable } : null,
      warnings: res?.warnings ?? null,
    };
  }
  if (r.error) entry.error = r.error;
  return entry;
}

function callerAuth(c: Caller, tokenHmac: string, accessorHmac: string, key: Buffer): Record<string, unknown> {
  return {
    client_token: tokenHmac,
    accessor: accessorHmac,
    display_name: c.displayName,
    policies: c.policies,
    metadata: redact(key, c.meta),
    orphan: c.orphan,
    expire_time: c.expireTime ? new Date(c.expireTime).toISOString() : null,
  };
}

function resultAuth(a: AuthResult, key: Buffer): Record<string, unknown> {
  return {
    client_token: hmacValue(key, a.client_token),
    accessor: hmacValue(key, a.accessor),
    policies: a.policies,
    metadata: a.metadata ? redact(key, a.metadata) : null,
    lease_duration: a.lease_duration,
    renewable: a.renewable,
    num_uses: a.num_uses,
  };
}

import type { AuthResult, Caller, Request, Response } from '../core/request.js';
import { hmacValue, redact } from './hmac.js';

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

/** The logged form of a record under one device's HMAC key: tokens, accessors and values only as HMACs. */
export function formatRecord(r: AuditRecord, key: Buffer): Record<string, unknown> {
  const entry: Record<string, unknown> = {
    time: new Date().toISOString(),
    type: r.type,
    auth: r.caller ? callerAuth(r.caller, key) : null,
    request: {
      id: r.req.id,
      operation: r.req.operation,
      path: r.req.path,
      mount_type: r.mountType ?? null,
      client_token: r.req.token ? hmacValue(key, r.req.token) : null,
      remote_address: r.req.client.address,
      data: redact(key, r.req.data, r.plain),
      wrap_ttl: r.req.wrapTTL ?? null,
    },
  };
  if (r.type === 'response') {
    const res = r.response;
    entry.response = {
      status: r.status ?? null,
      data: res?.data ? redact(key, res.data, r.plain) : res?.bare ? redact(key, res.bare, r.plain) : null,
      auth: res?.auth ? resultAuth(res.auth, key) : null,
      warnings: res?.warnings ?? null,
    };
  }
  if (r.error) entry.error = r.error;
  return entry;
}

function callerAuth(c: Caller, key: Buffer): Record<string, unknown> {
  return {
    client_token: hmacValue(key, c.token),
    accessor: hmacValue(key, c.accessor),
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

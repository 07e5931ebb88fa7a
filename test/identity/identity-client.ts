import type { SvidResult } from '../../src/identity/index.js';
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { makeKeyAndCsr } from '../../src/identity/csr-make.js';

// An HTTPS client for the identity API that can also present an X.509-SVID (mutual TLS). `fetch` cannot take a
// private CA or a client certificate without an extra dispatcher, so this uses node:https directly.

export interface IdResult {
  status: number;
  /** The JSON body, or null when the body is not JSON. */
  body: any;
  text: string;
  bytes: Buffer;
  headers: IncomingHttpHeaders;
}

export interface CallOptions {
  /** X-Vault-Token; the client's default when undefined, none when null. */
  token?: string | null;
  /** Sent as JSON. */
  body?: unknown;
  /** Client certificate chain (PEM: leaf, then intermediates) and its key, for mutual TLS. */
  cert?: string;
  key?: string;
  timeoutMs?: number;
}

export type IdentityCall = (method: string, path: string, opts?: CallOptions) => Promise<IdResult>;

/**
 * Calls `<address>/v1/<path>` (or `<address><path>` when `path` starts with '/') over HTTPS, trusting only `caFile`.
 * Each call has its own connection (agent: false): a client certificate is per connection, and a reused one
 * would carry the previous call's identity.
 */
export function identityClient(address: string, caFile: string, defaultToken: string | null): IdentityCall {
  const ca = readFileSync(caFile, 'utf8');
  return (method, path, o = {}) => new Promise((resolve, reject) => {
    const url = new URL(path.startsWith('/') ? path : `/v1/${path}`, address);
    const headers: Record<string, string> = {};
    const token = o.token === undefined ? defaultToken : o.token;
    if (token) headers['x-vault-token'] = token;
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const req = request(url, { method, headers, ca, cert: o.cert, key: o.key, agent: false, timeout: o.timeoutMs ?? 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString('utf8');
        let body: unknown = null;
        try { body = text ? JSON.parse(text) : null; } catch { body = null; }
        resolve({ status: res.statusCode ?? 0, body, text, bytes, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${o.timeoutMs ?? 15_000} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The first error message of an API error body, for assertions. */
export function errorOf(r: IdResult): string {
  return Array.isArray(r.body?.errors) ? r.body.errors.join('; ') : r.text;
}

export type SvidData = SvidResult;

/** A workload as an agent holds it: its own key (never sent), its SVID, and the token attestation gave it. */
export interface Workload {
  spiffeId: string;
  keyPem: string;
  /** Leaf then intermediates: what the workload presents in a TLS handshake. */
  certPem: string;
  svid: SvidData;
  token: string;
}

/** A join token for `service` in `namespace`, made with the root token. */
export async function createJoinToken(call: IdentityCall, service: string, namespace = 'default', ttl?: string): Promise<{ token: string; spiffe_id: string; expiration: number }> {
  const r = await call('POST', 'identity/join-token', { body: { service, namespace, ...(ttl ? { ttl } : {}) } });
  if (r.status !== 200) throw new Error(`join-token: ${r.status} ${errorOf(r)}`);
  return r.body.data;
}

/** Attests a new workload with a fresh join token and a key made here (makeKeyAndCsr, as an agent does). */
export async function newWorkload(call: IdentityCall, service: string, namespace = 'default'): Promise<Workload> {
  const jt = await createJoinToken(call, service, namespace);
  const { keyPem, csrPem } = await makeKeyAndCsr();
  const r = await call('POST', 'identity/attest/join-token', { token: null, body: { join_token: jt.token, csr: csrPem } });
  if (r.status !== 200) throw new Error(`attest/join-token: ${r.status} ${errorOf(r)}`);
  const svid = r.body.data as SvidData;
  return { spiffeId: svid.spiffe_id, keyPem, certPem: svid.certificate + svid.ca_chain.join(''), svid, token: r.body.auth.client_token };
}

/** Renews over mutual TLS: the current SVID is the only credential (no token). */
export async function renewOverMtls(call: IdentityCall, w: { keyPem: string; certPem: string }, csr: string): Promise<IdResult> {
  return call('POST', 'identity/svid', { token: null, cert: w.certPem, key: w.keyPem, body: { csr } });
}

import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** A failure the CLI reports as one line on stderr with a non-zero exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ApiResponse {
  status: number;
  body: Record<string, unknown> | null;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

export const TOKEN_FILE = join(homedir(), '.aegis-token');

export interface ClientOptions {
  address?: string;
  token?: string | null;
  caCert?: string | null;
  /** Mutual TLS: a client certificate chain (PEM) and its key, e.g. the agent's X.509-SVID. */
  clientCert?: () => { cert: string; key: string } | null;
}

/** Talks to the API the way any other client would: HTTP(S), the token in X-Vault-Token. */
export class ApiClient {
  readonly address: URL;
  private readonly token: string | null;
  private readonly ca: string | undefined;
  private readonly clientCert: ClientOptions['clientCert'];

  constructor(opts: ClientOptions = {}) {
    this.clientCert = opts.clientCert;
    const addr = opts.address ?? process.env.AEGIS_ADDR ?? 'https://127.0.0.1:8200';
    try {
      this.address = new URL(addr);
    } catch {
      throw new CliError(`AEGIS_ADDR "${addr}" is not a URL like https://127.0.0.1:8200`);
    }
    if (this.address.protocol !== 'http:' && this.address.protocol !== 'https:') throw new CliError(`AEGIS_ADDR must start with https:// or http://, not ${this.address.protocol}`);
    this.token = opts.token !== undefined ? opts.token : (process.env.AEGIS_TOKEN ?? readTokenFile());
    const caPath = opts.caCert ?? process.env.AEGIS_CACERT;
    if (caPath) {
      try {
        this.ca = readFileSync(caPath, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read AEGIS_CACERT ${caPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
    }
  }

  async call(method: string, path: string, opts: { body?: unknown; query?: Record<string, string>; headers?: Record<string, string>; auth?: boolean } = {}): Promise<ApiResponse> {
    const url = new URL(`/v1/${path.replace(/^\/+/, '').split('/').map(encodeURIComponent).join('/')}`, this.address);
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.auth !== false && this.token) headers['x-vault-token'] = this.token;
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body));
      headers['content-type'] ??= 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const mtls = this.clientCert?.() ?? {};
    return new Promise<ApiResponse>((resolve, reject) => {
      const req = send(url, { method, headers, ca: this.ca, ...mtls, timeout: 60_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> | null = null;
          try {
            body = text ? (JSON.parse(text) as Record<string, unknown>) : null;
          } catch {
            body = null;
          }
          resolve({ status: res.statusCode ?? 0, body, text, headers: res.headers });
        });
      });
      req.on('timeout', () => req.destroy(new Error('timed out after 60s')));
      req.on('error', (err: NodeJS.ErrnoException) => reject(new CliError(connectionError(this.address, err))));
      req.end(payload);
    });
  }

  /** Like `call`, but any status ≥ 400 becomes a CliError carrying the server's message. */
  async ok(method: string, path: string, opts: Parameters<ApiClient['call']>[2] = {}): Promise<ApiResponse> {
    const res = await this.call(method, path, opts);
    if (res.status >= 400) throw new CliError(describeError(res, method, path));
    return res;
  }
}

export function describeError(res: ApiResponse, method: string, path: string): string {
  const errors = Array.isArray(res.body?.errors) ? (res.body!.errors as string[]) : [];
  const what = errors.length > 0 ? errors.join('; ') : res.text.trim() || 'no message';
  return `${method} ${path}: ${res.status} ${what}`;
}

function connectionError(addr: URL, err: NodeJS.ErrnoException): string {
  if (err.code === 'ECONNREFUSED') return `cannot reach Aegis at ${addr.origin}: connection refused (is the server running? is AEGIS_ADDR right?)`;
  if (err.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || err.code === 'SELF_SIGNED_CERT_IN_CHAIN' || err.code === 'DEPTH_ZERO_SELF_SIGNED_CERT') {
    return `cannot verify the server certificate of ${addr.origin}: set AEGIS_CACERT to the CA file the server printed (${err.code})`;
  }
  if (err.code === 'EPROTO' && addr.protocol === 'https:') return `TLS failed with ${addr.origin}: is the server plain HTTP? then use http:// in AEGIS_ADDR`;
  return `request to ${addr.origin} failed: ${err.message}`;
}

function readTokenFile(): string | null {
  try {
    return readFileSync(TOKEN_FILE, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

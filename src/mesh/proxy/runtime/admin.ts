import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EndpointAddress } from '../types.js';
import type { ProxyMetrics } from './metrics.js';

// The sidecar's local admin port (Envoy's admin listener, Linkerd2-proxy's metrics port): Prometheus metrics, a
// status document, a readiness probe, and one operator action, POST /renew (rotate the SVID now). Loopback only: it
// says who the proxy is and what it is connected to, and /renew changes state.
//
//   GET  /metrics  Prometheus text format
//   GET  /status   JSON of status()
//   GET  /ready    200 `ready` / 503 `not ready`
//   POST /renew    200 {"serial","expires_at"} / 502 {"errors":[…]} / 404 when the proxy cannot renew on demand
//
// Loopback binding alone does not stop a browser on the same machine: a page can POST to 127.0.0.1 (a "simple"
// request needs no preflight) and, through DNS rebinding, read answers under its own host name. So a request whose
// Host is not a loopback name, or that carries a non-loopback Origin, is refused (403).

export interface AdminServerOptions {
  /** 127.0.0.1, ::1 or localhost; port 0 for any. */
  listen: EndpointAddress;
  metrics: ProxyMetrics;
  status: () => unknown;
  ready: () => boolean;
  /** Forces an SVID renewal now; without it POST /renew is 404. */
  renew?: () => Promise<{ serial: string; expiresAt: number }>;
}

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);
/** The Host / Origin host names a loopback client can legitimately use. */
const LOOPBACK_NAMES = new Set(['127.0.0.1', '[::1]', 'localhost']);

const ROUTES: Record<string, readonly string[]> = {
  '/metrics': ['GET', 'HEAD'],
  '/status': ['GET', 'HEAD'],
  '/ready': ['GET', 'HEAD'],
  '/renew': ['POST'],
};

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOSTS.has(host);
}

/** `127.0.0.1:9901`, `[::1]:9901`, `localhost` → is the name part a loopback name. */
function loopbackAuthority(authority: string): boolean {
  const name = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.replace(/:\d*$/, '');
  return LOOPBACK_NAMES.has(name.toLowerCase());
}

function loopbackOrigin(origin: string): boolean {
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && loopbackAuthority(u.host);
  } catch {
    return false; // "null" (sandboxed frames, file://) and garbage
  }
}

const COMMON_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } as const;

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...extra }).end(body);
}

const text = (res: ServerResponse, status: number, body: string, extra?: Record<string, string>) => send(res, status, 'text/plain; charset=utf-8', `${body}\n`, extra);
const json = (res: ServerResponse, status: number, body: unknown) => send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Starts the admin HTTP server; rejects with a RangeError for a non-loopback host. */
export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  if (!isLoopbackHost(opts.listen.host)) {
    throw new RangeError(`the admin listener must be a loopback address (127.0.0.1, ::1 or localhost), not ${JSON.stringify(opts.listen.host)}`);
  }
  const server = createServer({ maxHeaderSize: 8 * 1024 }, (req, res) => {
    handle(opts, req, res).catch((err: unknown) => text(res, 500, `internal error: ${message(err)}`));
  });
  // Small, local and quick: nothing should hold a connection long.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  server.maxRequestsPerSocket = 1_000;
  server.maxConnections = 64;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  server.listen(opts.listen.port, opts.listen.host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

async function handle(opts: AdminServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  req.resume(); // no route reads a body: drain whatever was sent
  const host = req.headers.host;
  const origin = req.headers.origin;
  if (host === undefined || !loopbackAuthority(host) || (origin !== undefined && !loopbackOrigin(origin))) {
    return text(res, 403, 'forbidden: the admin port only answers loopback clients');
  }
  const path = (req.url ?? '/').split('?', 1)[0]!;
  const methods = ROUTES[path];
  if (!Object.hasOwn(ROUTES, path) || !methods) return text(res, 404, 'not found');
  const method = req.method ?? 'GET';
  if (!methods.includes(method)) return text(res, 405, 'method not allowed', { allow: methods.join(', ') });

  switch (path) {
    case '/metrics': {
      let out: { contentType: string; body: string };
      try {
        out = await opts.metrics.render();
      } catch (err) {
        return text(res, 500, `metrics failed: ${message(err)}`);
      }
      return send(res, 200, out.contentType, out.body);
    }
    case '/status': {
      let body: string;
      try {
        body = JSON.stringify(opts.status()) ?? 'null';
      } catch (err) {
        return text(res, 500, `status failed: ${message(err)}`);
      }
      return send(res, 200, 'application/json; charset=utf-8', body);
    }
    case '/ready': {
      let ready = false;
      try {
        ready = opts.ready() === true;
      } catch {
        ready = false; // a readiness check that throws is not ready
      }
      return ready ? text(res, 200, 'ready') : text(res, 503, 'not ready');
    }
    case '/renew': {
      if (!opts.renew) return json(res, 404, { errors: ['this proxy cannot renew its SVID on demand'] });
      try {
        const r = await opts.renew();
        return json(res, 200, { serial: r.serial, expires_at: new Date(r.expiresAt).toISOString() });
      } catch (err) {
        return json(res, 502, { errors: [`renewal failed: ${message(err)}`] });
      }
    }
  }
}

import { randomUUID, type X509Certificate } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Core } from '../core/core.js';
import { parseDuration } from '../core/duration.js';
import { MAX_WRAP_TTL } from '../core/wrapping/index.js';
import type { PipelineResult } from '../core/pipeline.js';
import type { Operation, Request } from '../core/request.js';
import { FramedConnection } from './list-verb.js';
import { RateLimiter } from './rate-limit.js';

export interface HttpApiOptions {
  core: Core;
  tls: { cert: string; key: string } | null;
  maxRequestBytes: number;
  requestTimeoutMs: number;
  rateLimit: { perSecond: number; burst: number };
}

// TLS 1.3, or 1.2 with forward-secret AEAD suites only.
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

const JSON_TYPES = ['application/json', 'application/merge-patch+json', 'application/x-www-form-urlencoded'];
const SUPPORTED_METHODS = 'GET, LIST, POST, PUT, PATCH, DELETE';

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
  }
}

function errorBody(messages: string[]): string {
  return JSON.stringify({ errors: messages });
}

/**
 * The HTTP face of the pipeline, and nothing more: HTTP in → Request → core.handle → Response → HTTP out.
 * Every /v1 path goes through one catch-all route, so no route can exist that the pipeline does not see.
 */
export function buildHttpApi(opts: HttpApiOptions): FastifyInstance {
  const limiter = new RateLimiter(opts.rateLimit.perSecond, opts.rateLimit.burst);
  const app = fastify({
    logger: false,
    bodyLimit: opts.maxRequestBytes,
    requestIdHeader: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 4096 },
    // Errors fastify raises before routing (bad percent-encoding in the URL): the same {"errors": [...]} format.
    frameworkErrors: (err, _req, reply) => {
      const [status, message] = err.code === 'FST_ERR_BAD_URL' ? [400, 'invalid path: bad percent-encoding']
        : err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? [400, 'invalid path: too long'] : [500, 'internal error'];
      (reply as FastifyReply).code(status).type('application/json').send(errorBody([message]));
    },
    serverFactory: (handler) => makeServer(handler, opts),
    clientErrorHandler,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Anything else with a body is refused (415), rather than guessed at.
  app.addContentTypeParser('*', (req, _payload, done) => {
    done(new HttpError(415, `unsupported content type "${req.headers['content-type']}": send application/json`), undefined);
  });

  app.addHook('onRequest', async (req, reply) => {
    if (!limiter.take(req.socket.remoteAddress ?? '')) {
      reply.header('retry-after', '1');
      throw new HttpError(429, 'rate limit exceeded: too many requests from this client; slow down and retry');
    }
  });
  app.addHook('onClose', async () => limiter.close());

  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    url: '/v1/*',
    handler: async (req, reply) => {
      const request = toRequest(req);
      return send(reply, await opts.core.handle(request), req.method === 'HEAD', request.id);
    },
  });

  // OIDC discovery lives at the server's root (OpenID Connect Discovery §4), so outside systems can federate with
  // JWT-SVIDs: served by the identity engine through the same pipeline.
  app.get('/.well-known/openid-configuration', async (req, reply) => {
    const request = toRequest(req, 'identity/.well-known/openid-configuration');
    return send(reply, await opts.core.handle(request), false, request.id);
  });

  app.setNotFoundHandler((req, reply) => {
    if (req.url.startsWith('/v1/')) {
      reply.code(405).header('allow', SUPPORTED_METHODS).type('application/json').send(errorBody([`unsupported method ${req.method}: use ${SUPPORTED_METHODS}`]));
      return;
    }
    reply.code(404).type('application/json').send(errorBody([`no such endpoint ${req.method} ${req.url.split('?')[0]}: the API is under /v1/`]));
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    let status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    let message = status === 500 ? 'internal error' : err.message;
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') [status, message] = [413, `request body is larger than the limit of ${opts.maxRequestBytes} bytes`];
    else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') [status, message] = [415, 'unsupported content type: send application/json'];
    if (status === 500) opts.core.logger.error({ err: err.message }, 'unhandled error in the HTTP layer');
    reply.code(status).type('application/json').send(errorBody([message]));
  });

  return app;
}

/**
 * Requests Node's HTTP parser refuses (a method it does not know, such as LIST after a chunked body, or a malformed
 * head): answered in the API's error format and with `Connection: close`, because the connection is closed right
 * after; without that header a keep-alive client reuses the dead connection and its next request fails.
 */
function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, reason, message] = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'request timed out']
    : err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'request headers are too large']
      : [400, 'Bad Request', err.code === 'HPE_INVALID_METHOD' ? `malformed HTTP request: unknown method; use ${SUPPORTED_METHODS}` : 'malformed HTTP request'];
  const body = errorBody([message]);
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}

function makeServer(handler: (req: IncomingMessage, res: ServerResponse) => void, opts: HttpApiOptions): Server {
  // Node checks request and header timeouts every connectionsCheckingInterval (30 s by default): a slow client
  // (slowloris) would hold its connection that long whatever the timeouts say, so check at a tenth of them.
  const timing = { connectionsCheckingInterval: Math.max(100, Math.min(opts.requestTimeoutMs, 10_000) / 10) };
  const server: Server = opts.tls
    ? createHttpsServer({ ...timing, cert: opts.tls.cert, key: opts.tls.key, minVersion: 'TLSv1.2',
      // Workloads authenticate with their X.509-SVID (renewal, JWT-SVIDs): ask for a certificate, never require one;
      // the pipeline's authn verifies what was presented.
      requestCert: true, rejectUnauthorized: false, ciphers: TLS12_CIPHERS, honorCipherOrder: true, ALPNProtocols: ['http/1.1'] }, handler)
    : createHttpServer(timing, handler);
  server.requestTimeout = opts.requestTimeoutMs;
  server.headersTimeout = Math.min(opts.requestTimeoutMs, 10_000);
  server.keepAliveTimeout = 65_000;
  // Insert the LIST framer between each connection and the HTTP parser (see list-verb.ts).
  const event = opts.tls ? 'secureConnection' : 'connection';
  const original = server.listeners(event);
  if (original.length !== 1) throw new Error(`expected one ${event} listener on the HTTP server, found ${original.length}`);
  server.removeAllListeners(event);
  server.on(event, (socket) => (original[0] as (s: unknown) => void).call(server, new FramedConnection(socket, server.headersTimeout)));
  return server;
}

function parseJsonBody(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  const text = body.toString('utf8');
  let value: unknown;
  try {
    // A key can also be spelled with \u escapes ("\u005f_proto__"), so any escape means the careful parse too.
    value = text.includes('__proto__') || text.includes('constructor') || text.includes('\\u')
      ? JSON.parse(text, (k, v) => {
        if (k === '__proto__' || (k === 'prototype' && v && typeof v === 'object')) throw new HttpError(400, 'request body must not contain __proto__ or prototype keys');
        return v;
      })
      : JSON.parse(text);
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, 'request body must be a JSON object');
  return value as Record<string, unknown>;
}

function toRequest(req: FastifyRequest, fixedPath?: string): Request {
  const url = req.raw.url ?? '';
  const q = url.indexOf('?');
  const rawPath = (q === -1 ? url : url.slice(0, q)).slice('/v1/'.length);
  let path: string;
  try {
    path = fixedPath ?? decodeURIComponent(rawPath);
  } catch {
    throw new HttpError(400, 'invalid path: bad percent-encoding');
  }
  const query: Record<string, unknown> = {};
  if (q !== -1) for (const [k, v] of new URLSearchParams(url.slice(q + 1))) query[k] = v;

  let operation: Operation;
  let data: Record<string, unknown>;
  switch (req.method) {
    case 'GET':
    case 'HEAD':
      operation = query.list === 'true' || query.list === '1' ? 'list' : 'read';
      delete query.list;
      data = query;
      break;
    case 'POST':
    case 'PUT':
      operation = 'update';
      data = (req.body as Record<string, unknown> | undefined) ?? {};
      break;
    case 'PATCH':
      operation = 'patch';
      data = (req.body as Record<string, unknown> | undefined) ?? {};
      break;
    default:
      operation = 'delete';
      data = { ...query, ...((req.body as Record<string, unknown> | undefined) ?? {}) };
  }
  const wrapTTL = wrapTtlOf(req.headers['x-vault-wrap-ttl']);
  const socket = req.socket as unknown as FramedConnection;
  const client: Request['client'] = { address: req.socket.remoteAddress ?? '' };
  if (socket.encrypted) client.peerCertificate = () => peerCertificate(socket.socket as TLSSocket);
  return { id: randomUUID(), operation, path, data, token: tokenOf(req), client, ...(wrapTTL ? { wrapTTL } : {}) };
}

/** X-Vault-Wrap-TTL: seconds or a duration ("5m"); a bad value is refused rather than answered unwrapped. */
function wrapTtlOf(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  let ttl: number;
  try {
    ttl = parseDuration(value, 'X-Vault-Wrap-TTL');
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  if (ttl < 1 || ttl > MAX_WRAP_TTL) throw new HttpError(400, `X-Vault-Wrap-TTL must be between 1s and ${MAX_WRAP_TTL}s (30 days)`);
  return ttl;
}

const peerCerts = new WeakMap<TLSSocket, X509Certificate | null>();

/** The client's certificate, parsed once per connection (it cannot change within one). */
function peerCertificate(socket: TLSSocket): X509Certificate | null {
  let cert = peerCerts.get(socket);
  if (cert === undefined) {
    cert = socket.getPeerX509Certificate() ?? null;
    peerCerts.set(socket, cert);
  }
  return cert;
}

/** Server-Sent Events: the response stays open, one `data:` line per event, until either side ends it. */
function stream(reply: FastifyReply, events: (signal: AbortSignal) => AsyncIterable<string | null>): FastifyReply {
  const ac = new AbortController();
  const raw = reply.raw;
  reply.hijack();
  raw.on('close', () => ac.abort());
  raw.writeHead(200, { ...(reply.getHeaders() as Record<string, string>), 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  raw.flushHeaders();
  void (async () => {
    try {
      for await (const ev of events(ac.signal)) {
        if (ac.signal.aborted) break;
        raw.write(ev === null ? ': keep-alive\n\n' : `data: ${ev}\n\n`);
      }
    } catch {
      // The stream's source failed (sealed): end the response; the client reconnects.
    } finally {
      if (!raw.writableEnded) raw.end();
    }
  })();
  return reply;
}

function tokenOf(req: FastifyRequest): string | null {
  const v = req.headers['x-vault-token'];
  if (typeof v === 'string' && v !== '') return v;
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (m) return m[1]!;
  }
  return null;
}

function send(reply: FastifyReply, r: PipelineResult, head: boolean, requestId: string): FastifyReply {
  reply.code(r.status).header('cache-control', 'no-store');
  if (r.error) return reply.type('application/json').send(errorBody([r.error.message]));
  const res = r.response;
  for (const [k, v] of Object.entries(res?.headers ?? {})) reply.header(k, v);
  if (r.status === 204 || !res) return reply.send();
  if (res.events && !head) return stream(reply, res.events);
  if (res.raw) return reply.type(res.raw.contentType).send(res.raw.body);
  if (head) return reply.send();
  const body = res.bare ?? {
    request_id: requestId,
    lease_id: res.lease?.id ?? '',
    renewable: res.lease?.renewable ?? false,
    lease_duration: res.lease?.duration ?? 0,
    data: res.wrapInfo ? null : res.data ?? null,
    wrap_info: res.wrapInfo ?? null,
    warnings: res.warnings ?? null,
    auth: res.auth ?? null,
  };
  return reply.type('application/json').send(JSON.stringify(body));
}

// The SPIFFE Workload API served by `aegis agent` on a unix socket. Behaviour follows the SPIFFE standards
// "The SPIFFE Workload Endpoint" (cited as Endpoint §n) and "The SPIFFE Workload API" (cited as API §n).
// The agent (attestation, renewal, JWT signing) plugs in through `WorkloadSource`; this module only serves it.
import { lstat, mkdir, chmod, rm, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, loadPackageDefinition, status, type Metadata, type ServiceClientConstructor,
  type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import type { Logger } from '../../telemetry/index.js';
import { trustDomainId } from '../spiffe-id.js';

export interface X509SvidState {
  spiffeId: string;
  /** DER certificates: leaf first, then intermediates (concatenated in the response's x509_svid bytes, per the standard). */
  chain: Buffer[];
  /** PKCS#8 DER private key. */
  key: Buffer;
  expiresAt: Date;
}

export interface WorkloadState {
  /** e.g. "example.org" */
  trustDomain: string;
  svid: X509SvidState;
  /** DER root certificates of the trust domain (concatenated as the bundle bytes). */
  bundle: Buffer[];
  /** DER CRLs, may be empty. */
  crl: Buffer[];
  /** The trust domain's JWT bundle: a JWKS JSON document (bytes) per the SPIFFE Trust Domain and Bundle standard. */
  jwtBundle: Buffer;
}

export interface WorkloadSource {
  /** null while the agent has not attested yet. */
  current(): WorkloadState | null;
  /** Called when the SVID is renewed, the bundle changes or the CRLs change; returns an unsubscribe function. */
  onUpdate(listener: (s: WorkloadState) => void): () => void;
  fetchJwtSvid(audience: string[], spiffeId?: string): Promise<{ spiffeId: string; token: string }>;
  /** Rejects when the token is not a valid JWT-SVID for the audience. */
  validateJwtSvid(token: string, audience: string): Promise<{ spiffeId: string; claims: Record<string, unknown> }>;
}

export interface WorkloadApi {
  /** Ends open streams (Unavailable, so clients reconnect with backoff), stops the server, removes the socket. */
  close(): Promise<void>;
}

/** The .proto this server is generated from; clients (tests, a future `aegis agent api` command) load the same file. */
export const WORKLOAD_API_PROTO = fileURLToPath(new URL('./workload.proto', import.meta.url));
/** How messages look in JS: proto field names, bytes as Buffer, every field present. */
export const PROTO_LOADER_OPTIONS: Options = { keepCase: true, longs: String, defaults: true };

const SECURITY_HEADER = 'workload.spiffe.io';
const NOT_READY = 'the agent has not attested yet; retry with backoff';
const SHUTDOWN_GRACE_MS = 5_000;
// sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH = 107;

export class WorkloadSocketError extends Error {
  readonly code = 'ERR_WORKLOAD_SOCKET';
}

export async function startWorkloadApi(opts: { socketPath: string; source: WorkloadSource; logger?: Logger }): Promise<WorkloadApi> {
  const path = socketFilePath(opts.socketPath);
  const log = opts.logger?.child({ component: 'workload-api' });
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await removeStaleSocket(path);

  const api = loadPackageDefinition(loadSync(WORKLOAD_API_PROTO, PROTO_LOADER_OPTIONS));
  const service = (api['SpiffeWorkloadAPI'] as ServiceClientConstructor).service;
  const streams = new Set<StopStream>();
  const server = new Server();
  server.addService(service, handlers(opts.source, streams, log));

  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix://${path}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    // The socket is created with the process umask; narrow it to the agent's user at once.
    await chmod(path, 0o600);
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
  log?.info({ socket: path }, 'workload API listening');

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        for (const stop of [...streams]) stop(status.UNAVAILABLE, 'the workload API is shutting down; reconnect');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, SHUTDOWN_GRACE_MS);
          server.tryShutdown(() => { clearTimeout(timer); resolve(); });
        });
        await rm(path, { force: true });
        log?.info({ socket: path }, 'workload API closed');
      })();
      return closing;
    },
  };
}

type StopStream = (code: status, details: string) => void;
interface Context { source: WorkloadSource; streams: Set<StopStream>; log: Logger | undefined }

function handlers(source: WorkloadSource, streams: Set<StopStream>, log?: Logger): UntypedServiceImplementation {
  const ctx: Context = { source, streams, log };
  return {
    FetchX509SVID: serveStream(ctx, x509SvidResponse, (s) => (s.svid.expiresAt.getTime() <= Date.now()
      ? 'the agent\'s X509-SVID has expired and is being renewed; retry with backoff' : null)),
    FetchX509Bundles: serveStream(ctx, (s) => ({ crl: s.crl, bundles: { [trustDomainId(s.trustDomain)]: Buffer.concat(s.bundle) } })),
    FetchJWTBundles: serveStream(ctx, (s) => ({ bundles: { [trustDomainId(s.trustDomain)]: jwtKeysOnly(s.jwtBundle) } })),
    FetchJWTSVID: fetchJwtSvid(ctx),
    ValidateJWTSVID: validateJwtSvid(ctx),
  };
}

/** A server stream: the full current message now (API §4.3), then one per update, until the client goes away. */
function serveStream<T>({ source, streams, log }: Context, render: (s: WorkloadState) => T, unready: (s: WorkloadState) => string | null = () => null) {
  return (call: ServerWritableStream<unknown, T>) => {
    if (!hasSecurityHeader(call.metadata)) return fail(call, status.INVALID_ARGUMENT, 'security header missing from request');
    const state = source.current();
    // Endpoint §6: an implementation still initializing answers Unavailable; clients retry with backoff.
    if (!state) return fail(call, status.UNAVAILABLE, NOT_READY);
    const notReady = unready(state);
    if (notReady) return fail(call, status.UNAVAILABLE, notReady);

    let done = false;
    let blocked = false;
    let waiting: T | undefined; // while a slow reader catches up, only the newest message is kept
    let unsubscribe = () => {};
    const finish = () => {
      if (done) return;
      done = true;
      unsubscribe();
      streams.delete(stop);
    };
    const stop: StopStream = (code, details) => {
      if (done) return;
      finish();
      fail(call, code, details);
    };
    const send = (s: WorkloadState) => {
      if (done || call.cancelled) return;
      let message: T;
      try {
        message = render(s);
      } catch (err) {
        log?.error({ err, rpc: call.getPath() }, 'cannot render workload state');
        return stop(status.INTERNAL, 'the agent holds invalid identity material');
      }
      if (blocked) waiting = message;
      else blocked = !call.write(message);
    };
    call.on('drain', () => {
      blocked = false;
      if (waiting === undefined) return;
      const next = waiting;
      waiting = undefined;
      blocked = !call.write(next);
    });
    call.on('cancelled', finish);
    call.on('close', finish);
    streams.add(stop);
    unsubscribe = source.onUpdate(send);
    send(state);
  };
}

function fetchJwtSvid({ source, log }: Context) {
  return async (call: ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>, reply: sendUnaryData<unknown>) => {
    if (!hasSecurityHeader(call.metadata)) return reply({ code: status.INVALID_ARGUMENT, details: 'security header missing from request' });
    const { audience, spiffe_id: wanted } = call.request;
    // API §6.2.1 and §4.5: audience is mandatory.
    if (audience.length === 0 || audience.some((a) => a === '')) return reply({ code: status.INVALID_ARGUMENT, details: 'audience must be specified' });
    const state = source.current();
    if (!state) return reply({ code: status.UNAVAILABLE, details: NOT_READY });
    // API §6.2.1: not authorized for the requested identity → PermissionDenied.
    if (wanted && wanted !== state.svid.spiffeId) return reply({ code: status.PERMISSION_DENIED, details: `this workload is not entitled to ${wanted}` });
    try {
      const jwt = await source.fetchJwtSvid(audience, wanted || undefined);
      reply(null, { svids: [{ spiffe_id: jwt.spiffeId, svid: jwt.token, hint: '' }] });
    } catch (err) {
      log?.warn({ err }, 'cannot issue a JWT-SVID');
      reply({ code: status.UNAVAILABLE, details: 'the agent could not issue a JWT-SVID; retry with backoff' });
    }
  };
}

function validateJwtSvid({ source, log }: Context) {
  return async (call: ServerUnaryCall<{ audience: string; svid: string }, unknown>, reply: sendUnaryData<unknown>) => {
    if (!hasSecurityHeader(call.metadata)) return reply({ code: status.INVALID_ARGUMENT, details: 'security header missing from request' });
    const { audience, svid } = call.request;
    // API §6.2.3: every request field is mandatory.
    if (!audience) return reply({ code: status.INVALID_ARGUMENT, details: 'audience must be specified' });
    if (!svid) return reply({ code: status.INVALID_ARGUMENT, details: 'svid must be specified' });
    if (!source.current()) return reply({ code: status.UNAVAILABLE, details: NOT_READY });
    let result: { spiffeId: string; claims: Record<string, unknown> };
    try {
      result = await source.validateJwtSvid(svid, audience);
    } catch (err) {
      return reply({ code: status.INVALID_ARGUMENT, details: `the JWT-SVID is not valid: ${err instanceof Error ? err.message : String(err)}` });
    }
    try {
      reply(null, { spiffe_id: result.spiffeId, claims: toStruct(result.claims) });
    } catch (err) {
      log?.error({ err }, 'cannot encode JWT-SVID claims');
      reply({ code: status.INTERNAL, details: 'the token\'s claims cannot be encoded as a google.protobuf.Struct' });
    }
  };
}

// Endpoint §3: every request MUST carry `workload.spiffe.io: true` (case sensitive), against SSRF.
function hasSecurityHeader(metadata: Metadata): boolean {
  const values = metadata.get(SECURITY_HEADER);
  return values.length === 1 && values[0] === 'true';
}

function fail<T>(call: ServerWritableStream<unknown, T>, code: status, details: string): void {
  call.emit('error', { code, details });
}

function x509SvidResponse(s: WorkloadState) {
  if (s.svid.chain.length === 0 || s.svid.key.length === 0 || s.bundle.length === 0) throw new Error('X509-SVID state lacks a certificate, key or bundle');
  return {
    svids: [{
      spiffe_id: s.svid.spiffeId,
      x509_svid: Buffer.concat(s.svid.chain),
      x509_svid_key: s.svid.key,
      bundle: Buffer.concat(s.bundle),
      hint: '',
    }],
    crl: s.crl,
    federated_bundles: {},
  };
}

/**
 * API §6.2.2: the JWT bundle is a standard RFC 7517 JWK Set of JWT-SVID signing keys and MUST NOT include keys with
 * other uses. A SPIFFE bundle (Trust Domain and Bundle standard) also holds `use: "x509-svid"` keys: drop them. The
 * kept keys lose `use: "jwt-svid"` too, since §6.3's legacy JOSE validators skip keys whose `use` is not "sig"
 * (SPIRE serves the same plain `{"keys": [...]}`).
 */
function jwtKeysOnly(jwks: Buffer): Buffer {
  const doc = JSON.parse(jwks.toString('utf8')) as { keys?: unknown };
  if (!Array.isArray(doc.keys)) throw new Error('the JWT bundle is not a JWKS document (no "keys" array)');
  const keys = (doc.keys as { use?: unknown }[])
    .filter((k) => k.use === undefined || k.use === 'jwt-svid')
    .map(({ use: _use, ...key }) => key);
  return Buffer.from(JSON.stringify({ keys }));
}

export type StructValue =
  | { nullValue: 'NULL_VALUE' } | { numberValue: number } | { stringValue: string } | { boolValue: boolean }
  | { structValue: Struct } | { listValue: { values: StructValue[] } };
export interface Struct { fields: Record<string, StructValue> }

/** JSON-like claims as google.protobuf.Struct in proto-loader's object shape (the oneof member set, `kind` omitted). */
export function toStruct(obj: Record<string, unknown>): Struct {
  const fields: Record<string, StructValue> = {};
  // As JSON.stringify: an undefined member is left out.
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = toStructValue(v);
  return { fields };
}

function toStructValue(v: unknown): StructValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') {
    // google.protobuf.Value: NaN and infinities have no JSON form and are refused.
    if (!Number.isFinite(v)) throw new TypeError(`claim value ${v} has no google.protobuf.Value form`);
    return { numberValue: v };
  }
  if (Array.isArray(v)) return { listValue: { values: v.map((x) => (x === undefined ? { nullValue: 'NULL_VALUE' as const } : toStructValue(x))) } };
  if (typeof v === 'object' && Object.prototype.toString.call(v) === '[object Object]') return { structValue: toStruct(v as Record<string, unknown>) };
  throw new TypeError(`claim value of type ${typeof v} has no google.protobuf.Value form`);
}

/** Endpoint §4: `unix:///absolute/path` (a bare absolute path is accepted too). TCP is not offered. */
function socketFilePath(address: string): string {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (!isAbsolute(path)) throw new WorkloadSocketError(`workload API socket must be unix:///absolute/path, got ${JSON.stringify(address)}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw new WorkloadSocketError(`workload API socket path is ${Buffer.byteLength(path)} bytes; unix sockets allow at most ${MAX_SOCKET_PATH}: choose a shorter path`);
  return path;
}

/** Removes a socket left by a previous run; refuses to touch a live socket or anything that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket()) throw new WorkloadSocketError(`${path} exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(path)) throw new WorkloadSocketError(`another process is serving ${path}; stop it or choose another socket path`);
  await unlink(path);
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (answered: boolean) => { clearTimeout(timer); socket.destroy(); resolve(answered); };
    // A listener too busy to accept within a second is still alive: do not steal its path.
    const timer = setTimeout(() => done(true), 1_000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

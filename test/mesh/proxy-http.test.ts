import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { InboundHttpListener, PeerVerifier, type HttpRequestInfo, type HttpRequestRecord, type InboundHttpOptions } from '../../src/mesh/proxy/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { settlesWithin as within, until as untilNamed } from '../helpers/wait.js';
import { EventLog, issueSvid, meshWorld, runClient, selfSignedSvid, type TestSvid, type TrustDomainCa } from './proxy-fixtures.js';

/** Polls a counter that has no event of its own; bounded. */
const until = (pred: () => boolean, ms = 2_000) => untilNamed('a counter to move', pred, ms);

// The inbound listener in http mode end to end on 127.0.0.1, real TLS 1.3 mTLS: HTTP/1.1 and HTTP/2 clients →
// InboundHttpListener → a plain HTTP/1.1 app that echoes what it received. Per-request decisions, XFCC, streaming,
// and the live changes (revocation, cut, credential rotation).

const MiB = 1024 * 1024;
const BIG = randomBytes(MiB);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let ca: TrustDomainCa;
let verifier: PeerVerifier;
let apiSvid: TestSvid;
let webSvid: TestSvid;
const events = new EventLog();
const revokedSerials = new Set<string>();
const revokedIds = new Set<string>();
const allowed = new Set<string>();

interface Seen {
  method: string;
  url: string;
  xfcc: string | string[] | null;
  host: string | null;
  length: number;
  sha256: string;
}

/** The app: echoes what it got as JSON; `/big` answers 1 MiB, `/hang` never answers. Records every request. */
let app: { port: number; seen: Seen[] };

async function startApp(): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const s: Seen = { method: req.method!, url: req.url!, xfcc: req.headers['x-forwarded-client-cert'] ?? null, host: req.headers.host ?? null, length: body.length, sha256: sha256(body) };
      seen.push(s);
      if (req.url === '/hang') return;
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
        // Written in pieces: the proxy must stream it, not receive it in one chunk.
        for (let i = 0; i < BIG.length; i += 64 * 1024) res.write(BIG.subarray(i, i + 64 * 1024));
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'echo' });
      res.end(JSON.stringify(s));
    });
  });
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

before(async () => {
  ({ ca, verifier, apiSvid, webSvid } = await meshWorld({ serials: revokedSerials, ids: revokedIds }));
  app = await startApp();
  allowed.add(webSvid.spiffeId);
});

async function inbound(opts: Partial<InboundHttpOptions> = {}): Promise<InboundHttpListener> {
  const l = await InboundHttpListener.start({
    listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port }, credentials: apiSvid, verifier,
    authorizeRequest: (id) => allowed.has(id), onEvent: events.sink, ...opts,
  });
  onCleanup(() => l.close());
  return l;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  socket: TLSSocket;
}

const tlsOf = (svid: TestSvid) => ({ key: svid.keyPem, cert: svid.certChainPem, ca: ca.bundlePem, checkServerIdentity: () => undefined });

/** One HTTP/1.1 request over mTLS (no ALPN offered: the listener must fall back to HTTP/1.1); bounded. */
function h1(port: number, svid: TestSvid, o: { method?: string; path?: string; headers?: OutgoingHttpHeaders; body?: Buffer; agent?: HttpsAgent } = {}): Promise<Answer> {
  return within(new Promise<Answer>((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path ?? '/', headers: o.headers ?? {}, ...tlsOf(svid),
      agent: o.agent ?? false,
    }, (res: IncomingMessage) => {
      // Taken now: a keep-alive agent takes the socket back (res.socket = null) once the body ended.
      const socket = res.socket as TLSSocket;
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  }), 5_000, `${o.method ?? 'GET'} ${o.path ?? '/'} over HTTP/1.1`);
}

/** An HTTP/2 session over mTLS, closed at the end of the file. */
async function h2Session(port: number, svid: TestSvid): Promise<ClientHttp2Session> {
  const s = h2Connect(`https://127.0.0.1:${port}`, tlsOf(svid));
  s.on('error', () => {});
  onCleanup(() => s.destroy());
  await within(once(s, 'connect'), 3_000, 'h2 connect');
  return s;
}

function h2(s: ClientHttp2Session, o: { method?: string; path?: string; headers?: OutgoingHttpHeaders; body?: Buffer } = {}): Promise<Omit<Answer, 'socket'>> {
  return within(new Promise((resolve, reject) => {
    const stream = s.request({ ':method': o.method ?? 'GET', ':path': o.path ?? '/', ...o.headers });
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => { status = Number(h[':status']); headers = h as IncomingHttpHeaders; });
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => resolve({ status, headers, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    stream.end(o.body);
  }), 5_000, `${o.method ?? 'GET'} ${o.path ?? '/'} over HTTP/2`);
}

const echoed = (a: { body: Buffer }) => JSON.parse(a.body.toString('utf8')) as Seen;

function expectedXfcc(server: TestSvid, client: TestSvid): string {
  const hash = sha256(new X509Certificate(client.certChainPem).raw);
  return `By=${server.spiffeId};Hash=${hash};URI=${client.spiffeId}`;
}

describe('http mode: HTTP/1.1 and HTTP/2 → mTLS → per-request decision → app', () => {
  it('HTTP/1.1 and HTTP/2 clients both get through, with the exact XFCC; a client-supplied XFCC is replaced', async () => {
    const records: HttpRequestRecord[] = [];
    const api = await inbound({ onRequest: (r) => records.push(r) });
    const forged = 'By=spiffe://example.org/ns/default/svc/api;Hash=00;URI=spiffe://example.org/ns/default/svc/admin';

    const a = await h1(api.port, webSvid, { method: 'PUT', path: '/things/1?x=1', headers: { 'x-forwarded-client-cert': forged }, body: Buffer.from('hello') });
    assert.equal(a.status, 200);
    assert.equal(a.socket.alpnProtocol, false, 'no ALPN offered: HTTP/1.1 fallback');
    assert.equal(a.headers['x-app'], 'echo');
    const e1 = echoed(a);
    assert.deepEqual([e1.method, e1.url, e1.length, e1.host], ['PUT', '/things/1?x=1', 5, `127.0.0.1:${api.port}`]);
    assert.equal(e1.xfcc, expectedXfcc(apiSvid, webSvid));

    const s = await h2Session(api.port, webSvid);
    assert.equal(s.alpnProtocol, 'h2');
    const b = await h2(s, { method: 'POST', path: '/things?y=2', headers: { 'x-forwarded-client-cert': forged }, body: Buffer.from('hello h2') });
    assert.equal(b.status, 200);
    const e2 = echoed(b);
    assert.deepEqual([e2.method, e2.url, e2.length, e2.host], ['POST', '/things?y=2', 8, `127.0.0.1:${api.port}`]);
    assert.equal(e2.xfcc, expectedXfcc(apiSvid, webSvid));
    // A second stream on the same session.
    assert.equal(echoed(await h2(s, { path: '/again' })).url, '/again');

    await until(() => records.length === 3);
    assert.deepEqual(records.map((r) => [r.method, r.status, r.allowed, r.protocol]), [['PUT', 200, true, 'http/1.1'], ['POST', 200, true, 'h2'], ['GET', 200, true, 'h2']]);
    assert.ok(records.every((r) => r.seconds > 0 && r.seconds < 5));
    const st = api.stats();
    assert.deepEqual([st.accepted, st.requests, st.denied, st.refused], [2, 3, 0, 0]);
    assert.equal(st.bytesIn, 5 + 8);
    assert.deepEqual(api.connections().map((c) => c.protocol).sort(), ['h2']);
  });

  it('method/path rules: only GET /api/* passes; every denial is a 403 `RBAC: access denied` and an event; the app sees none', async () => {
    const asked: [string, HttpRequestInfo][] = [];
    const api = await inbound({
      authorizeRequest: (id, r) => {
        asked.push([id, r]);
        return r.method === 'GET' && r.path.startsWith('/api/');
      },
    });
    const s = await h2Session(api.port, webSvid);
    events.mark();
    const before = app.seen.length;

    const ok = await h1(api.port, webSvid, { path: '/api/x?q=1' });
    assert.equal(ok.status, 200);
    assert.equal(echoed(ok).url, '/api/x?q=1');
    assert.equal(asked[0]![1].path, '/api/x', 'the path is decided without its query string');
    assert.equal(asked[0]![0], webSvid.spiffeId);
    assert.equal(asked[0]![1].headers['x-forwarded-client-cert'], undefined, 'the decision never sees a client XFCC');

    const post = await h1(api.port, webSvid, { method: 'POST', path: '/api/x', body: Buffer.from('payload') });
    assert.deepEqual([post.status, post.body.toString()], [403, 'RBAC: access denied']);
    const admin = await h2(s, { path: '/admin' });
    assert.deepEqual([admin.status, admin.body.toString()], [403, 'RBAC: access denied']);
    // Dot segments are resolved before the decision: this is /admin, not /api/….
    const sneaky = await h1(api.port, webSvid, { path: '/api/%2e%2e/admin' });
    assert.equal(sneaky.status, 403);
    // The HTTP/2 session survives a denial.
    assert.equal((await h2(s, { path: '/api/y' })).status, 200);

    const denials = events.all.slice(-3);
    assert.deepEqual(denials.map((e) => [e.type, e.reason, e.direction, e.spiffeId, e.detail]), [
      ['denied', 'denied', 'inbound', webSvid.spiffeId, 'POST /api/x is not allowed by policy'],
      ['denied', 'denied', 'inbound', webSvid.spiffeId, 'GET /admin is not allowed by policy'],
      ['denied', 'denied', 'inbound', webSvid.spiffeId, 'GET /admin is not allowed by policy'],
    ]);
    assert.deepEqual(app.seen.slice(before).map((x) => `${x.method} ${x.url}`), ['GET /api/x?q=1', 'GET /api/y']);
    assert.equal(api.stats().denied, 3);
  });

  it('default deny: a throwing, rejecting or non-true decision denies', async () => {
    for (const authorizeRequest of [() => { throw new Error('boom'); }, () => Promise.reject(new Error('boom')), () => 'yes' as unknown as boolean]) {
      const api = await inbound({ authorizeRequest });
      const a = await h1(api.port, webSvid, { path: '/api/x' });
      assert.deepEqual([a.status, a.body.toString()], [403, 'RBAC: access denied']);
    }
  });

  it('refuses a client without a certificate (curl) and a self-signed one, with the reason; nothing reaches the app', async () => {
    const api = await inbound();
    const before = app.seen.length;
    events.mark();
    const r = await runClient('curl', ['-sk', '--http1.1', '--max-time', '5', `https://127.0.0.1:${api.port}/`]);
    assert.notEqual(r.code, 0, `curl without a certificate must fail (stdout ${JSON.stringify(r.stdout)})`);
    assert.equal(r.stdout, '');
    const e = await events.next((x) => x.type === 'refused');
    assert.deepEqual([e.reason, e.direction], ['no_certificate', 'inbound']);

    events.mark();
    const forger = await selfSignedSvid('example.org', 'web');
    await assert.rejects(h1(api.port, { ...forger, bundlePem: ca.bundlePem }, { path: '/api/x' }));
    const e2 = await events.next((x) => x.type === 'refused');
    assert.deepEqual([e2.reason, e2.spiffeId], ['unknown_ca', forger.spiffeId]);
    // HTTP/2 likewise: the session dies before any stream is answered.
    events.mark();
    const s = h2Connect(`https://127.0.0.1:${api.port}`, tlsOf({ ...forger, bundlePem: ca.bundlePem }));
    s.on('error', () => {});
    onCleanup(() => s.destroy());
    const stream = s.request({ ':path': '/api/h2' });
    stream.on('error', () => {});
    await within(once(stream, 'close'), 3_000, 'the refused h2 stream closed');
    assert.equal((await events.next((x) => x.type === 'refused')).reason, 'unknown_ca');

    assert.equal(app.seen.length, before);
    assert.deepEqual([api.stats().refused, api.stats().accepted], [3, 0]);
  });

  it('streams a 1 MiB response and a 1 MiB request body intact, over both protocols', async () => {
    const api = await inbound();
    const down = await h1(api.port, webSvid, { path: '/big' });
    assert.equal(down.status, 200);
    assert.equal(down.headers['keep-alive'], undefined, 'hop-by-hop response headers are dropped');
    assert.equal(sha256(down.body), sha256(BIG));
    const up = await h1(api.port, webSvid, { method: 'POST', path: '/upload', body: BIG });
    assert.deepEqual([echoed(up).length, echoed(up).sha256], [MiB, sha256(BIG)]);

    const s = await h2Session(api.port, webSvid);
    const down2 = await h2(s, { path: '/big' });
    assert.equal(sha256(down2.body), sha256(BIG));
    const up2 = await h2(s, { method: 'POST', path: '/upload', body: BIG });
    assert.deepEqual([echoed(up2).length, echoed(up2).sha256], [MiB, sha256(BIG)]);
    await until(() => api.stats().bytesOut >= 2 * MiB);
    assert.ok(api.stats().bytesIn >= 2 * MiB);
  });

  it('app down → 502; app silent past appTimeoutMs → 504; the listener keeps serving', async () => {
    const dead = createNetServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise((r) => dead.close(r));
    const records: HttpRequestRecord[] = [];
    const down = await inbound({ app: { host: '127.0.0.1', port: deadPort }, onRequest: (r) => records.push(r) });
    const a = await h1(down.port, webSvid, { path: '/x' });
    assert.equal(a.status, 502);
    assert.match(a.body.toString(), /upstream connect error/);
    const s = await h2Session(down.port, webSvid);
    assert.equal((await h2(s, { path: '/x' })).status, 502);
    await until(() => records.length === 2);
    assert.deepEqual(records.map((r) => [r.status, r.allowed]), [[502, true], [502, true]]);

    const slow = await inbound({ appTimeoutMs: 300 });
    const started = Date.now();
    const b = await h1(slow.port, webSvid, { path: '/hang' });
    assert.deepEqual([b.status, b.body.toString()], [504, 'upstream request timeout']);
    assert.ok(Date.now() - started < 2_000);
    assert.equal((await h1(slow.port, webSvid, { path: '/fine' })).status, 200);
  });

  it('survives clients that reset mid-request and a failing event sink', async () => {
    const api = await inbound({ onEvent: () => { throw new Error('sink down'); }, onRequest: () => { throw new Error('sink down'); } });
    // An HTTP/1.1 client that promises a large body and vanishes.
    const raw = tlsConnect({ host: '127.0.0.1', port: api.port, ...tlsOf(webSvid) });
    raw.on('error', () => {});
    await within(once(raw, 'secureConnect'), 3_000, 'connect');
    raw.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\npartial');
    await until(() => api.stats().requests === 1);
    raw.destroy();
    // An HTTP/2 stream reset while its response is streaming.
    const s = await h2Session(api.port, webSvid);
    const stream = s.request({ ':path': '/big' });
    stream.on('error', () => {});
    await within(once(stream, 'response'), 3_000, 'response');
    stream.close();
    // Denied with a throwing sink: still a 403.
    assert.equal((await h1(api.port, issueSvid(ca, 'stranger'), { path: '/' })).status, 403);
    assert.equal((await h2(s, { path: '/still' })).status, 200);
    await until(() => api.stats().active === 1);
  });
});

describe('http mode: live changes', () => {
  it('revalidate() after a serial is revoked closes a live HTTP/2 session within 1 s, with a `closed` event', async () => {
    const api = await inbound();
    const victim = issueSvid(ca, 'web');
    const s = await h2Session(api.port, victim);
    assert.equal((await h2(s, { path: '/live' })).status, 200);
    const bystander = await h2Session(api.port, webSvid);
    assert.equal((await h2(bystander, { path: '/live' })).status, 200);
    events.mark();
    revokedSerials.add(victim.serial);
    const started = Date.now();
    const closed = once(s, 'close');
    assert.equal(await api.revalidate(), 1);
    await within(closed, 1_000, 'the revoked session closed');
    assert.ok(Date.now() - started < 1_000);
    const e = await events.next((x) => x.type === 'closed');
    assert.deepEqual([e.reason, e.spiffeId, e.direction], ['revoked', victim.spiffeId, 'inbound']);
    assert.equal((await h2(bystander, { path: '/unaffected' })).status, 200);
    assert.deepEqual([api.stats().cut, api.stats().active], [1, 1]);
    // A new connection with the revoked SVID is refused at the handshake.
    events.mark();
    await assert.rejects(h1(api.port, victim));
    assert.equal((await events.next((x) => x.type === 'refused')).reason, 'revoked');
  });

  it('closeConnectionsOf closes a keep-alive HTTP/1.1 connection within 1 s; a revocation landing between requests refuses the next one', async () => {
    const api = await inbound();
    const svc = issueSvid(ca, 'reports');
    allowed.add(svc.spiffeId);
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    onCleanup(() => agent.destroy());
    const first = await h1(api.port, svc, { path: '/one', agent });
    const second = await h1(api.port, svc, { path: '/two', agent });
    assert.equal(first.socket, second.socket, 'one keep-alive connection');
    assert.equal(api.connections().filter((c) => c.spiffeId === svc.spiffeId)[0]?.requests, 2);
    events.mark();
    const closed = once(first.socket, 'close');
    assert.equal(api.closeConnectionsOf(svc.spiffeId), 1);
    await within(closed, 1_000, 'the keep-alive connection closed');
    const e = await events.next((x) => x.type === 'closed');
    assert.deepEqual([e.reason, e.spiffeId], ['revoked', svc.spiffeId]);

    // Revoked by ID between two requests of one connection, without a revalidate: the per-request recheck catches it.
    const again = await h1(api.port, svc, { path: '/three', agent });
    assert.equal(again.status, 200);
    events.mark();
    revokedIds.add(svc.spiffeId);
    try {
      await assert.rejects(h1(api.port, svc, { path: '/four', agent }));
      const r = await events.next((x) => x.type === 'refused');
      assert.deepEqual([r.reason, r.spiffeId], ['revoked', svc.spiffeId]);
      assert.ok(!app.seen.some((x) => x.url === '/four'));
    } finally {
      revokedIds.delete(svc.spiffeId);
    }
  });

  it('revalidate() with authorizeConnection cuts identities no longer allowed; without it, only revocation counts', async () => {
    const gate = new Set([webSvid.spiffeId]);
    const api = await inbound({ authorizeConnection: (id) => gate.has(id) });
    const plain = await inbound();
    const s = await h2Session(api.port, webSvid);
    const p = await h2Session(plain.port, webSvid);
    assert.equal((await h2(s, { path: '/a' })).status, 200);
    assert.equal((await h2(p, { path: '/a' })).status, 200);
    gate.delete(webSvid.spiffeId);
    events.mark();
    const closed = once(s, 'close');
    assert.equal(await api.revalidate(), 1);
    assert.equal(await plain.revalidate(), 0);
    await within(closed, 1_000, 'closed after the policy change');
    assert.equal((await events.next((x) => x.type === 'closed')).reason, 'denied');
    assert.equal((await h2(p, { path: '/b' })).status, 200);
  });

  it('updateCredentials: new connections get the new server SVID, an open HTTP/2 session keeps working; TLS 1.2 stays refused', async () => {
    const api = await inbound();
    const s = await h2Session(api.port, webSvid);
    assert.equal((s.socket as TLSSocket).getPeerX509Certificate()!.serialNumber.toLowerCase(), apiSvid.serial);
    assert.equal((await h2(s, { path: '/before' })).status, 200);

    const renewed = issueSvid(ca, 'api');
    api.updateCredentials(renewed);
    const fresh = await h1(api.port, webSvid, { path: '/new' });
    assert.equal(fresh.socket.getPeerX509Certificate()!.serialNumber.toLowerCase(), renewed.serial);
    assert.equal(echoed(fresh).xfcc, expectedXfcc(renewed, webSvid));
    const kept = await h2(s, { path: '/after' });
    assert.equal(kept.status, 200);
    assert.equal(echoed(kept).url, '/after');

    // An explicit By for XFCC, if the caller wants one.
    api.updateCredentials(renewed, 'spiffe://example.org/ns/default/svc/api-http');
    assert.match(String(echoed(await h2(s, { path: '/by' })).xfcc), /^By=spiffe:\/\/example\.org\/ns\/default\/svc\/api-http;Hash=/);

    events.mark();
    const old = tlsConnect({ host: '127.0.0.1', port: api.port, ...tlsOf(webSvid), maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' });
    old.on('error', () => {});
    onCleanup(() => old.destroy());
    await assert.rejects(within(once(old, 'secureConnect'), 3_000, 'TLS 1.2'));
    assert.equal((await events.next((x) => x.type === 'refused')).reason, 'protocol');
  });
});

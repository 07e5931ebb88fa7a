import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { InboundListener, OutboundConnector, PeerVerifier, type OutboundOptions } from '../../src/mesh/proxy/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { settlesWithin as within, until as untilNamed } from '../helpers/wait.js';
import { EventLog, issueSvid, meshWorld, startEchoApp, type TestSvid, type TrustDomainCa } from './proxy-fixtures.js';

// The proxy's TLS core end to end on 127.0.0.1: app → outbound connector → mTLS → inbound listener → echo app, and
// the live changes: credentials swapped under open connections, revocations and withdrawn authorization cutting them.

let ca: TrustDomainCa;
let app: Awaited<ReturnType<typeof startEchoApp>>;
const events = new EventLog();
const revokedSerials = new Set<string>();
const revokedIds = new Set<string>();
const allowed = new Set<string>();
let verifier: PeerVerifier;
let apiSvid: TestSvid;
let webSvid: TestSvid;

before(async () => {
  ({ ca, verifier, apiSvid, webSvid } = await meshWorld({ serials: revokedSerials, ids: revokedIds }));
  app = await startEchoApp();
  allowed.add(webSvid.spiffeId);
});

async function inbound(svid = apiSvid): Promise<InboundListener> {
  const l = await InboundListener.start({
    listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port }, credentials: svid, verifier,
    authorize: (id) => allowed.has(id), onEvent: events.sink,
  });
  onCleanup(() => l.close());
  return l;
}

async function outbound(instances: string[], opts: Partial<OutboundOptions> = {}): Promise<OutboundConnector> {
  const o = await OutboundConnector.start({
    listen: { host: '127.0.0.1', port: 0 }, expectedSpiffeId: apiSvid.spiffeId, instances, credentials: webSvid, verifier,
    onEvent: events.sink, ...opts,
  });
  onCleanup(() => o.close());
  return o;
}

const at = (l: { port: number }) => `127.0.0.1:${l.port}`;

/** A plain TCP client of the local app side; `echo` sends a line and waits (bounded) for it to come back. */
async function client(port: number): Promise<{ socket: Socket; echo: (line: string) => Promise<void>; closed: Promise<void> }> {
  const socket = netConnect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  let got = '';
  socket.setEncoding('utf8').on('data', (d: string) => { got += d; });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const echo = async (line: string) => {
    got = '';
    socket.write(`${line}\n`);
    const deadline = Date.now() + 3_000;
    while (!got.includes(`${line}\n`)) {
      if (socket.destroyed || Date.now() > deadline) throw new Error(`no echo of ${line} (got ${JSON.stringify(got)})`);
      await new Promise((r) => socket.once('data', r).once('close', r));
    }
  };
  onCleanup(() => socket.destroy());
  return { socket, echo, closed };
}

/** Polls a counter that has no event of its own; bounded. */
const until = (pred: () => boolean, ms = 2_000) => untilNamed('a counter to move', pred, ms);

/** A direct mTLS connection to a listener (the outbound side's handshake without the connector). */
async function tlsClient(port: number, svid: TestSvid, opts: { maxVersion?: 'TLSv1.2' } = {}): Promise<TLSSocket> {
  const s = tlsConnect({
    host: '127.0.0.1', port, key: svid.keyPem, cert: svid.certChainPem, ca: svid.bundlePem, checkServerIdentity: () => undefined,
    ...(opts.maxVersion ? { maxVersion: opts.maxVersion, minVersion: 'TLSv1.2' as const } : {}),
  });
  onCleanup(() => s.destroy());
  await once(s, 'secureConnect');
  return s;
}

describe('outbound → mTLS → inbound → app', () => {
  it('carries bytes both ways for an authorized source and counts them', async () => {
    const api = await inbound();
    const web = await outbound([at(api)]);
    const before = app.connections();
    const c = await client(web.port);
    await c.echo('hello through the mesh');
    assert.equal(app.connections(), before + 1);
    assert.deepEqual([api.stats().accepted, api.stats().active], [1, 1]);
    c.socket.end();
    await within(c.closed, 3_000, 'close');
    await until(() => api.stats().active === 0 && web.stats().active === 0);
    const expected = 'hello through the mesh\n'.length;
    assert.deepEqual([api.stats().bytesIn, api.stats().bytesOut], [expected, expected]);
    assert.deepEqual([web.stats().bytesIn, web.stats().bytesOut], [expected, expected]);
  });

  it('outbound refuses a server with a valid SVID of another service (wrong_identity); the app sees nothing', async () => {
    const impostor = await inbound(issueSvid(ca, 'payments'));
    const web = await outbound([at(impostor)]);
    events.mark();
    const before = app.connections();
    const c = await client(web.port);
    const e = await events.next((x) => x.direction === 'outbound');
    assert.deepEqual([e.type, e.reason, e.spiffeId], ['refused', 'wrong_identity', 'spiffe://example.org/ns/default/svc/payments']);
    await within(c.closed, 3_000, 'local connection closed');
    assert.equal(app.connections(), before);
    assert.equal(web.stats().unavailable, 1);
  });

  it('retries a failed connect on the next instance, and spreads connections round robin', async () => {
    const dead = createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const deadAt = `127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise((r) => dead.close(r));
    const a = await inbound();
    const b = await inbound();
    const web = await outbound([deadAt, at(a), at(b)]);
    for (const line of ['one', 'two', 'three']) {
      const c = await client(web.port);
      await c.echo(line);
    }
    // one: dead → a; two: b; three: dead → a.
    assert.deepEqual([a.stats().accepted, b.stats().accepted, web.stats().failedAttempts], [2, 1, 2]);
  });

  it('gives up on an instance that accepts TCP but never answers the handshake, within the connect timeout', async () => {
    const held: Socket[] = [];
    const silent = createServer((s) => { held.push(s); s.on('error', () => {}); });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    onCleanup(() => { for (const s of held) s.destroy(); return new Promise((r) => silent.close(r)); });
    const api = await inbound();
    const web = await outbound([`127.0.0.1:${(silent.address() as AddressInfo).port}`, at(api)], { connectTimeoutMs: 300 });
    events.mark();
    const started = Date.now();
    const c = await client(web.port);
    await c.echo('after a timeout');
    assert.ok(Date.now() - started < 2_000);
    const e = await events.next((x) => x.direction === 'outbound');
    assert.deepEqual([e.type, e.reason, e.detail], ['refused', 'protocol', 'handshake timed out']);
  });

  it('inbound denies a verified source that authorization refuses, with a `denied` event', async () => {
    const api = await inbound();
    const intruder = issueSvid(ca, 'intruder');
    const web = await outbound([at(api)], { credentials: intruder });
    events.mark();
    const before = app.connections();
    const c = await client(web.port);
    const e = await events.next((x) => x.direction === 'inbound');
    assert.deepEqual([e.type, e.reason, e.spiffeId], ['denied', 'denied', intruder.spiffeId]);
    await within(c.closed, 3_000, 'closed after denial');
    assert.equal(app.connections(), before);
    assert.equal(api.stats().denied, 1);
  });
});

describe('live changes', () => {
  it('updateCredentials keeps an open connection working; new handshakes get the new SVID; TLS 1.2 stays refused', async () => {
    const api = await inbound();
    const web = await outbound([at(api)]);
    const c = await client(web.port);
    await c.echo('before rotation');
    const first = await tlsClient(api.port, webSvid);
    assert.equal(first.getPeerX509Certificate()!.serialNumber.toLowerCase(), apiSvid.serial);

    const renewed = issueSvid(ca, 'api');
    api.updateCredentials(renewed);
    const newWeb = issueSvid(ca, 'web');
    web.updateCredentials(newWeb);

    await c.echo('after rotation, same connection');
    const second = await tlsClient(api.port, webSvid);
    assert.equal(second.getPeerX509Certificate()!.serialNumber.toLowerCase(), renewed.serial);
    const c2 = await client(web.port);
    await c2.echo('new connection');
    const serials = api.connections().map((x) => x.serial);
    assert.ok(serials.includes(webSvid.serial) && serials.includes(newWeb.serial), 'the connector presents its new SVID on new connections only');
    // setSecureContext builds the context from the options given: the TLS 1.3 floor must survive it.
    events.mark();
    await assert.rejects(tlsClient(api.port, webSvid, { maxVersion: 'TLSv1.2' }));
    assert.equal((await events.next((x) => x.direction === 'inbound')).reason, 'protocol');
    await c.echo('still up');
  });

  it('a revoked serial loses its live connection within 1 s of revalidate()', async () => {
    const api = await inbound();
    const victim = issueSvid(ca, 'web');
    const web = await outbound([at(api)], { credentials: victim });
    const bystander = await client((await outbound([at(api)])).port);
    const c = await client(web.port);
    await c.echo('live');
    await bystander.echo('live too');
    events.mark();
    revokedSerials.add(victim.serial);
    const started = Date.now();
    assert.equal(await api.revalidate(), 1);
    await within(c.closed, 1_000, 'the revoked connection closed');
    assert.ok(Date.now() - started < 1_000);
    const e = await events.next((x) => x.type === 'closed');
    assert.deepEqual([e.reason, e.spiffeId], ['revoked', victim.spiffeId]);
    await bystander.echo('unaffected');
    assert.equal(api.stats().active, 1);
  });

  it('outbound revalidate() cuts live connections to an upstream whose SVID was revoked, and only those', async () => {
    const revokedApi = issueSvid(ca, 'api');
    const doomed = await inbound(revokedApi);
    const healthy = await inbound();
    const toDoomed = await outbound([at(doomed)]);
    const toHealthy = await outbound([at(healthy)]);
    const c = await client(toDoomed.port);
    const other = await client(toHealthy.port);
    await c.echo('before');
    await other.echo('before');
    assert.equal(toDoomed.revalidate(), 0);
    events.mark();
    revokedSerials.add(revokedApi.serial);
    const started = Date.now();
    assert.equal(toDoomed.revalidate(), 1);
    assert.equal(toHealthy.revalidate(), 0);
    await within(c.closed, 1_000, 'the connection to the revoked upstream closed');
    assert.ok(Date.now() - started < 1_000);
    const e = await events.next((x) => x.type === 'closed');
    assert.deepEqual([e.direction, e.reason, e.spiffeId], ['outbound', 'revoked', revokedApi.spiffeId]);
    await other.echo('unaffected');
    assert.equal(toDoomed.stats().active, 0);
  });

  it('withdrawn authorization and closeConnectionsOf close live connections of that identity only', async () => {
    const api = await inbound();
    const svc = issueSvid(ca, 'reports');
    allowed.add(svc.spiffeId);
    const port = (await outbound([at(api)], { credentials: svc })).port;
    const [c1, c2] = [await client(port), await client(port)];
    await c1.echo('a');
    await c2.echo('b');
    const other = await client((await outbound([at(api)])).port);
    await other.echo('c');
    assert.equal(api.closeConnectionsOf(svc.spiffeId), 2);
    await within(Promise.all([c1.closed, c2.closed]), 1_000, 'both closed');
    const c3 = await client(port);
    await c3.echo('reconnected');
    events.mark();
    allowed.delete(svc.spiffeId);
    assert.equal(await api.revalidate(), 1);
    await within(c3.closed, 1_000, 'closed after the policy change');
    assert.equal((await events.next((x) => x.type === 'closed')).reason, 'denied');
    await other.echo('still allowed');
  });
});

import { readFileSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InboundListener, PeerVerifier, type EventReason } from '../../src/mesh/proxy/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { tempDir } from '../helpers/temp.js';
import {
  DAY, EventLog, caTrueLeaf, issueSvid, makeTrustDomain, runClient, selfSignedSvid, startEchoApp, svidFiles,
  type TestSvid, type TrustDomainCa,
} from './proxy-fixtures.js';

// The negative TLS matrix of issue 6: real CLI clients (openssl s_client, curl) against an inbound listener. Each
// hostile or broken peer is refused — the app behind the listener never sees a connection — and each refusal is a
// security event with the precise reason. A good client through the same tools gets through (the control).

let dir: string;
let ca: TrustDomainCa;
let other: TrustDomainCa;
let app: Awaited<ReturnType<typeof startEchoApp>>;
let listener: InboundListener;
const events = new EventLog();
const revokedSerials = new Set<string>();
const revokedIds = new Set<string>();

before(async () => {
  dir = tempDir('proxy-matrix');
  [ca, other] = await Promise.all([makeTrustDomain('example.org'), makeTrustDomain('other.org')]);
  app = await startEchoApp();
  const verifier = new PeerVerifier({
    trustDomain: 'example.org', isSerialRevoked: (s) => revokedSerials.has(s), isIdRevoked: (id) => revokedIds.has(id),
  });
  listener = await InboundListener.start({
    listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port },
    credentials: issueSvid(ca, 'api'), verifier, authorize: () => true, onEvent: events.sink,
  });
  onCleanup(() => listener.close());
});

function sClientArgs(port: number, files?: { cert: string; key: string; chain: string }, version = '-tls1_3'): string[] {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, version, '-servername', 'api', '-no_ign_eof'];
  if (!files) return args;
  return [...args, '-cert', files.cert, '-key', files.key, ...(readFileSync(files.chain, 'utf8') ? ['-cert_chain', files.chain] : [])];
}

/** Runs a refused client; asserts it got no echo, the app saw no connection, and returns the refusal event's reason. */
async function refusedWith(cmd: string, args: string[], expected: EventReason, spiffeId?: string): Promise<void> {
  events.mark();
  const before = app.connections();
  const ev = events.next((e) => e.type === 'refused');
  const r = await runClient(cmd, args, 'ping-from-client\n');
  const e = await ev;
  assert.equal(e.reason, expected, `event ${JSON.stringify(e)}`);
  assert.equal(e.direction, 'inbound');
  assert.match(e.peer, /^127\.0\.0\.1:\d+$/);
  if (spiffeId) assert.equal(e.spiffeId, spiffeId);
  assert.doesNotMatch(r.stdout, /ping-from-client/, 'no byte came back through the proxy');
  assert.equal(app.connections(), before, 'the app never saw the refused client');
}

function filesFor(name: string, svid: TestSvid) {
  return svidFiles(dir, name, svid);
}

describe('inbound listener: the control', () => {
  it('admits a valid SVID of the trust domain presented by openssl s_client over TLS 1.3', async () => {
    const before = app.connections();
    const files = filesFor('good', issueSvid(ca, 'web'));
    const r = await runClient('openssl', sClientArgs(listener.port, files), 'ping-from-client\n', 8_000, /ping-from-client/);
    assert.match(r.stdout, /ping-from-client/, r.stderr);
    assert.match(r.stdout, /TLSv1\.3/);
    assert.equal(app.connections(), before + 1);
  });
});

describe('inbound listener refuses every peer of the negative matrix, with the right reason', () => {
  it('no client certificate (openssl s_client)', async () => {
    await refusedWith('openssl', sClientArgs(listener.port), 'no_certificate');
  });

  it('no client certificate (curl)', async () => {
    await refusedWith('curl', ['-sS', '-k', '--tlsv1.3', '--max-time', '5', `https://127.0.0.1:${listener.port}/`], 'no_certificate');
  });

  it('a self-signed certificate claiming an SPIFFE ID of the trust domain', async () => {
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('self', await selfSignedSvid('example.org', 'web'))), 'unknown_ca');
  });

  it('an SVID of another trust domain, from its own CA (openssl s_client)', async () => {
    const svid = issueSvid(other, 'web');
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('other', svid)), 'unknown_ca', svid.spiffeId);
  });

  it('an SVID of another trust domain, from its own CA (curl)', async () => {
    const f = filesFor('other-curl', issueSvid(other, 'web'));
    await refusedWith('curl', ['-sS', '-k', '--tlsv1.3', '--max-time', '5', '--cert', f.cert, '--key', f.key, `https://127.0.0.1:${listener.port}/`], 'unknown_ca');
  });

  it('an expired SVID', async () => {
    const svid = issueSvid(ca, 'web', { notBefore: Date.now() - 2 * DAY, notAfter: Date.now() - DAY });
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('expired', svid)), 'expired', svid.spiffeId);
  });

  it('an SVID not yet valid', async () => {
    const svid = issueSvid(ca, 'web', { notBefore: Date.now() + DAY, notAfter: Date.now() + 2 * DAY });
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('future', svid)), 'not_yet_valid', svid.spiffeId);
  });

  it('a revoked serial', async () => {
    const svid = issueSvid(ca, 'web');
    revokedSerials.add(svid.serial);
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('revoked', svid)), 'revoked', svid.spiffeId);
  });

  it('a revoked SPIFFE ID (every certificate of it)', async () => {
    const svid = issueSvid(ca, 'banned');
    revokedIds.add(svid.spiffeId);
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('revoked-id', svid)), 'revoked', svid.spiffeId);
  });

  it('a leaf with CA:true signed by the real intermediate', async () => {
    const svid = await caTrueLeaf(ca, 'web');
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('ca-true', svid)), 'bad_svid', svid.spiffeId);
  });

  it('TLS 1.2 with an otherwise valid SVID', async () => {
    await refusedWith('openssl', sClientArgs(listener.port, filesFor('tls12', issueSvid(ca, 'web')), '-tls1_2'), 'protocol');
  });

  it('TLS 1.1 and below', async () => {
    // OpenSSL 3 may refuse TLS 1.1 itself at its default security level: force it, and the server must still refuse.
    const args = [...sClientArgs(listener.port, filesFor('tls11', issueSvid(ca, 'web')), '-tls1_1'), '-cipher', 'DEFAULT:@SECLEVEL=0'];
    const from = events.all.length;
    const before = app.connections();
    const r = await runClient('openssl', args, 'ping-from-client\n');
    assert.doesNotMatch(r.stdout, /ping-from-client/);
    assert.equal(app.connections(), before);
    // Whether the ClientHello reaches the server depends on the local OpenSSL build; if it does, it is a protocol refusal.
    const seen = events.all.slice(from);
    if (seen.length === 0) assert.notEqual(r.code, 0, 's_client failed on its side');
    for (const e of seen) assert.deepEqual([e.type, e.reason], ['refused', 'protocol']);
  });
});

describe('a federated bundle', () => {
  it('refuses an SVID of another trust domain whose root is in the bundle (bad_svid: wrong trust domain)', async () => {
    const log = new EventLog();
    const verifier = new PeerVerifier({ trustDomain: 'example.org', isSerialRevoked: () => false, isIdRevoked: () => false });
    const federated = await InboundListener.start({
      listen: { host: '127.0.0.1', port: 0 }, app: { host: '127.0.0.1', port: app.port },
      credentials: { ...issueSvid(ca, 'api'), bundlePem: ca.bundlePem + other.bundlePem }, verifier, authorize: () => true, onEvent: log.sink,
    });
    onCleanup(() => federated.close());
    const svid = issueSvid(other, 'web');
    const before = app.connections();
    const r = await runClient('openssl', sClientArgs(federated.port, filesFor('federated', svid)), 'ping-from-client\n');
    const e = await log.next();
    assert.deepEqual([e.type, e.reason, e.spiffeId], ['refused', 'bad_svid', svid.spiffeId]);
    assert.doesNotMatch(r.stdout, /ping-from-client/);
    assert.equal(app.connections(), before);
  });
});

import 'reflect-metadata';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { credentials, loadPackageDefinition, Metadata, type Client, type ClientReadableStream, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Agent, PROTO_LOADER_OPTIONS, WORKLOAD_API_PROTO } from '../../src/identity/agent/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

type Api = Client & Record<string, (...args: unknown[]) => any>;
const WAIT_MS = 10_000;

function header(): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function unary<T = any>(client: Api, rpc: string, req: object): Promise<T> {
  return new Promise((resolve, reject) => client[rpc]!(req, header(), { deadline: Date.now() + WAIT_MS }, (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

/** The leaf of an x509_svid field (DER certificates back to back). */
function leafOf(buf: Buffer): X509Certificate {
  const len = buf[1]! & 0x80 ? buf.readUIntBE(2, buf[1]! & 0x7f) + 2 + (buf[1]! & 0x7f) : buf[1]! + 2;
  return new X509Certificate(buf.subarray(0, len));
}

describe('aegis agent: attests once, serves the SPIFFE Workload API, renews over mutual TLS', () => {
  let s: InProcessServer;
  let agent: Agent;
  let client: Api;
  let writeDir: string;
  const ID = 'spiffe://aegis.local/ns/shop/svc/cart';

  before(async () => {
    s = await startTestServer({ tls: true });
    const jt = await s.core.identity.joinTokens.create(ID, 600);
    const dir = tempDir('agent');
    writeDir = join(dir, 'svid');
    const socketPath = join(dir, 'agent.sock');
    agent = new Agent({
      address: s.address, caFile: s.caFile!, attestation: { joinToken: jt.token }, socketPath, writeDir,
      logger: createLogger('silent'), watchWaitSeconds: 2,
    });
    await agent.start();
    onCleanup(() => agent.stop());
    const Ctor = loadPackageDefinition(loadSync(WORKLOAD_API_PROTO, PROTO_LOADER_OPTIONS))['SpiffeWorkloadAPI'] as ServiceClientConstructor;
    client = new Ctor(`unix://${socketPath}`, credentials.createInsecure()) as Api;
    onCleanup(() => client.close());
  });

  it('serves the attested SVID whose key was made in the agent and matches the certificate', async () => {
    const call = client.FetchX509SVID!({}, header()) as ClientReadableStream<any>;
    const it = call[Symbol.asyncIterator]();
    const first = (await withTimeout(it.next(), 'the first X509SVIDResponse')).value;
    call.cancel();
    const svid = first.svids[0];
    assert.equal(svid.spiffe_id, ID);
    const leaf = leafOf(svid.x509_svid);
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    const key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
    assert.ok(leaf.checkPrivateKey(key), 'the served key belongs to the served certificate');
    assert.ok(svid.bundle.length > 0);
    // The same files on disk, for apps that read files.
    const onDisk = new X509Certificate(readFileSync(join(writeDir, 'svid.pem')));
    assert.equal(onDisk.serialNumber, leaf.serialNumber);
    assert.ok(onDisk.checkPrivateKey(createPrivateKey(readFileSync(join(writeDir, 'svid_key.pem')))));
  });

  it('renewal (authenticated by the current SVID over mutual TLS) pushes a new SVID with a new key on open streams', async () => {
    const call = client.FetchX509SVID!({}, header()) as ClientReadableStream<any>;
    const it = call[Symbol.asyncIterator]();
    const before = leafOf((await withTimeout(it.next(), 'the current SVID')).value.svids[0].x509_svid);
    await agent.renew();
    const after = (await withTimeout(it.next(), 'the renewed SVID')).value.svids[0];
    call.cancel();
    const leaf = leafOf(after.x509_svid);
    assert.notEqual(leaf.serialNumber, before.serialNumber);
    assert.equal(leaf.subjectAltName, `URI:${ID}`);
    assert.notEqual(leaf.publicKey.export({ format: 'jwk' }).x, before.publicKey.export({ format: 'jwk' }).x, 'a fresh key');
    const events = await s.core.events.recent(20, 'attest.svid');
    assert.ok(events.some((e) => e.outcome === 'success' && e.subject === ID), 'the renewal is a security event');
    assert.equal(new X509Certificate(readFileSync(join(writeDir, 'svid.pem'))).serialNumber, leaf.serialNumber, 'files rewritten');
  });

  it('JWT-SVIDs through the Workload API are issued for the agent identity and validate', async () => {
    const r = await unary(client, 'FetchJWTSVID', { audience: ['payments'] });
    assert.equal(r.svids[0].spiffe_id, ID);
    const v = await unary(client, 'ValidateJWTSVID', { audience: 'payments', svid: r.svids[0].svid });
    assert.equal(v.spiffe_id, ID);
    await assert.rejects(unary(client, 'ValidateJWTSVID', { audience: 'other', svid: r.svids[0].svid }));
  });

  it('a revocation reaches open bundle streams as a new CRL', async () => {
    const call = client.FetchX509Bundles!({}, header()) as ClientReadableStream<any>;
    const it = call[Symbol.asyncIterator]();
    const first = (await withTimeout(it.next(), 'the bundle')).value;
    const victim = await s.core.identity.joinTokens.create('spiffe://aegis.local/ns/shop/svc/victim', 60);
    const { makeKeyAndCsr } = await import('../../src/identity/csr-make.js');
    const { csrPem } = await makeKeyAndCsr();
    const svid = await s.core.identity.issueSvid(await s.core.identity.attestJoinToken(victim.token, {}), csrPem, undefined);
    await s.core.identity.revokeSerial(svid.serial_number);
    const next = (await withTimeout(it.next(), 'a bundle message after the revocation')).value;
    call.cancel();
    assert.ok(next.crl.length >= 1);
    assert.notDeepEqual(next.crl[0], first.crl[0], 'a new CRL');
  });

  it('refuses a plain-HTTP server address (renewal needs mutual TLS)', () => {
    assert.throws(() => new Agent({ address: 'http://127.0.0.1:1', attestation: { joinToken: 'x' }, socketPath: '/tmp/x.sock', logger: createLogger('silent') }), /needs an HTTPS server/);
  });
});

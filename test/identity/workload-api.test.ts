import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { lstatSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { credentials, loadPackageDefinition, Metadata, status, type Client, type ClientReadableStream,
  type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SignJWT, createLocalJWKSet, decodeJwt, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import { PROTO_LOADER_OPTIONS, WORKLOAD_API_PROTO, WorkloadSocketError, startWorkloadApi, toStruct,
  type WorkloadSource, type WorkloadState } from '../../src/identity/agent/workload-api.js';
import { tempDir } from '../helpers/temp.js';
import { onCleanup } from '../helpers/cleanup.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const TD = 'example.org';
const ID = `spiffe://${TD}/workload/web`;
const WAIT_MS = 5_000;
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

// ---- a real trust domain: root → intermediate → leaf, a CRL, and a JWT signing key ----

type Keys = webcrypto.CryptoKeyPair;
const newKeys = async () => (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as Keys;
const root = await newKeys();
const inter = await newKeys();
const day = 86_400_000;
const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
  name: 'CN=Aegis Test Root', keys: root as never, signingAlgorithm: EC, notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + 30 * day),
  extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
});
const interCert = await x509.X509CertificateGenerator.create({
  subject: 'CN=Aegis Test Intermediate', issuer: rootCert.subject, publicKey: inter.publicKey as never, signingKey: root.privateKey as never, signingAlgorithm: EC,
  notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + 10 * day),
  extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
});
const crl = await x509.X509CrlGenerator.create({ issuer: rootCert.subject, thisUpdate: new Date(), nextUpdate: new Date(Date.now() + day), signingKey: root.privateKey as never, signingAlgorithm: EC });
const jwtKeys = await generateKeyPair('ES256');
const jwtJwk: JWK = { ...(await exportJWK(jwtKeys.publicKey)), kid: 'jwt-1', use: 'jwt-svid' };
// A SPIFFE bundle also carries X.509 authorities (use x509-svid): the JWT bundle served must leave them out.
const x509Jwk: JWK = { ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), kid: 'x509-1', use: 'x509-svid' };
const jwtBundle = Buffer.from(JSON.stringify({ keys: [x509Jwk, jwtJwk], spiffe_sequence: 1 }));

async function issueSvid(spiffeId = ID, notAfter = new Date(Date.now() + 3_600_000)): Promise<WorkloadState> {
  const leafKeys = await newKeys();
  const leaf = await x509.X509CertificateGenerator.create({
    subject: 'O=SPIRE', issuer: interCert.subject, publicKey: leafKeys.publicKey as never, signingKey: inter.privateKey as never, signingAlgorithm: EC,
    notBefore: new Date(Date.now() - 60_000), notAfter,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }], true)],
  });
  return {
    trustDomain: TD,
    svid: { spiffeId, chain: [Buffer.from(leaf.rawData), Buffer.from(interCert.rawData)], key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey)), expiresAt: notAfter },
    bundle: [Buffer.from(rootCert.rawData)],
    crl: [Buffer.from(crl.rawData)],
    jwtBundle,
  };
}

// ---- the seam: an in-test WorkloadSource that counts its listeners ----

const EXTRA_CLAIMS = { aegis: { tags: ['a', 1, null, true], nested: { ratio: 1.5, off: false } }, note: null };

class TestSource implements WorkloadSource {
  readonly events = new EventEmitter();
  private readonly listeners = new Set<(s: WorkloadState) => void>();
  constructor(private state: WorkloadState | null) {}
  get listenerCount(): number { return this.listeners.size; }
  current() { return this.state; }
  onUpdate(listener: (s: WorkloadState) => void) {
    this.listeners.add(listener);
    this.events.emit('listeners', this.listeners.size);
    return () => { this.listeners.delete(listener); this.events.emit('listeners', this.listeners.size); };
  }
  push(s: WorkloadState) {
    this.state = s;
    for (const l of [...this.listeners]) l(s);
  }
  async fetchJwtSvid(audience: string[]) {
    const spiffeId = this.state!.svid.spiffeId;
    const token = await new SignJWT({ ...EXTRA_CLAIMS }).setProtectedHeader({ alg: 'ES256', kid: 'jwt-1', typ: 'JWT' })
      .setSubject(spiffeId).setAudience(audience).setIssuedAt().setExpirationTime('5m').sign(jwtKeys.privateKey);
    return { spiffeId, token };
  }
  async validateJwtSvid(token: string, audience: string) {
    // jose, like other JOSE libraries, skips keys whose `use` is not "sig": verify with the plain key.
    const { use: _use, ...key } = jwtJwk;
    const { payload } = await jwtVerify(token, createLocalJWKSet({ keys: [key] }), { audience });
    return { spiffeId: payload.sub!, claims: payload as Record<string, unknown> };
  }
  /** Resolves once the listener count is `n` (bounded). */
  async listenersReach(n: number): Promise<void> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), WAIT_MS);
    try {
      while (this.listeners.size !== n) await once(this.events, 'listeners', { signal: ac.signal });
    } finally {
      clearTimeout(timer);
    }
  }
}

// ---- a real grpc-js client generated from the same .proto ----

type Api = Client & Record<string, (...args: unknown[]) => any>;

async function serve(source: WorkloadSource): Promise<{ socket: string; client: Api; close(): Promise<void> }> {
  const socket = join(tempDir('wl'), 'agent.sock');
  const server = await startWorkloadApi({ socketPath: `unix://${socket}`, source });
  onCleanup(() => server.close());
  const Ctor = loadPackageDefinition(loadSync(WORKLOAD_API_PROTO, PROTO_LOADER_OPTIONS))['SpiffeWorkloadAPI'] as ServiceClientConstructor;
  const client = new Ctor(`unix://${socket}`, credentials.createInsecure()) as Api;
  onCleanup(() => client.close());
  return { socket, client, close: () => server.close() };
}

function header(value = 'true'): Metadata {
  const md = new Metadata();
  md.set('workload.spiffe.io', value);
  return md;
}

const deadline = () => ({ deadline: Date.now() + WAIT_MS });

function unary<T = any>(client: Api, rpc: string, req: object, md = header()): Promise<T> {
  return new Promise((resolve, reject) => client[rpc]!(req, md, deadline(), (err: ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function openStream(client: Api, rpc: string, md = header()) {
  const call = client[rpc]!({}, md) as ClientReadableStream<any>;
  const it = call[Symbol.asyncIterator]();
  return {
    call,
    async next(): Promise<any> {
      const r = await withTimeout(it.next(), `a ${rpc} message`);
      assert.ok(!r.done, `${rpc} stream ended`);
      return r.value;
    },
    /** The status the stream ended with. */
    async error(): Promise<ServiceError> {
      try {
        for (;;) if ((await withTimeout(it.next(), `${rpc} to end`)).done) break;
      } catch (err) {
        return err as ServiceError;
      }
      throw new Error(`${rpc} ended without an error status`);
    },
  };
}

/** X509-SVID: the x509_svid bytes are DER certificates back to back; each is a SEQUENCE whose header gives its length. */
function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length;) {
    assert.equal(buf[off], 0x30, 'each certificate is a DER SEQUENCE');
    const first = buf[off + 1]!;
    let len = first;
    let header = 2;
    if (first & 0x80) {
      const n = first & 0x7f;
      assert.ok(n >= 1 && n <= 4, 'definite DER length of 1..4 bytes');
      len = buf.readUIntBE(off + 2, n);
      header = 2 + n;
    }
    out.push(buf.subarray(off, off + header + len));
    off += header + len;
  }
  return out;
}

function fromStruct(s: { fields: Record<string, any> }): Record<string, unknown> {
  const value = (v: any): unknown => {
    if ('nullValue' in v) return null;
    if ('numberValue' in v) return v.numberValue;
    if ('stringValue' in v) return v.stringValue;
    if ('boolValue' in v) return v.boolValue;
    if ('structValue' in v) return fromStruct(v.structValue);
    if ('listValue' in v) return (v.listValue.values ?? []).map(value);
    throw new Error(`no kind in ${JSON.stringify(v)}`);
  };
  return Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, value(v)]));
}

const state = await issueSvid();
const source = new TestSource(state);
const api = await serve(source);

test('the socket is a unix socket readable and writable by the agent user only (0600)', () => {
  const st = lstatSync(api.socket);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
});

test('SSRF hardening: every RPC without `workload.spiffe.io: true` gets InvalidArgument', async () => {
  for (const md of [new Metadata(), header('True')]) {
    for (const rpc of ['FetchJWTSVID', 'ValidateJWTSVID']) {
      const err = await unary(api.client, rpc, { audience: rpc === 'FetchJWTSVID' ? ['x'] : 'x', svid: 'y' }, md).then(() => null, (e: ServiceError) => e);
      assert.equal(err?.code, status.INVALID_ARGUMENT, rpc);
      assert.equal(err?.details, 'security header missing from request');
    }
    for (const rpc of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) {
      const err = await openStream(api.client, rpc, md).error();
      assert.equal(err.code, status.INVALID_ARGUMENT, rpc);
      assert.equal(err.details, 'security header missing from request');
    }
  }
  assert.equal(source.listenerCount, 0);
});

test('FetchX509SVID returns the leaf first, its intermediate, the matching PKCS#8 key and the trust bundle', async () => {
  const s = openStream(api.client, 'FetchX509SVID');
  const res = await s.next();
  s.call.cancel();
  await source.listenersReach(0);
  assert.equal(res.svids.length, 1);
  const svid = res.svids[0];
  assert.equal(svid.spiffe_id, ID);
  const [leaf, intermediate, ...rest] = splitDer(svid.x509_svid).map((der) => new X509Certificate(der));
  assert.equal(rest.length, 0);
  assert.equal(leaf!.subjectAltName, `URI:${ID}`);
  assert.ok(leaf!.checkIssued(intermediate!) && leaf!.verify(intermediate!.publicKey), 'leaf is signed by the intermediate that follows it');
  assert.ok(leaf!.checkPrivateKey(createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' })), 'the key is the leaf\'s');
  const roots = splitDer(svid.bundle).map((der) => new X509Certificate(der));
  assert.equal(roots.length, 1);
  assert.ok(intermediate!.verify(roots[0]!.publicKey));
  assert.deepEqual(res.crl, state.crl);
  assert.deepEqual(res.federated_bundles, {});
});

test('a renewed SVID pushed by the agent arrives on an open stream, and cancelling removes the listener', async () => {
  const s = openStream(api.client, 'FetchX509SVID');
  const first = await s.next();
  assert.equal(source.listenerCount, 1);
  const renewed = await issueSvid();
  source.push(renewed);
  const second = await s.next();
  assert.notDeepEqual(second.svids[0].x509_svid, first.svids[0].x509_svid);
  assert.deepEqual(second.svids[0].x509_svid, Buffer.concat(renewed.svid.chain));
  s.call.cancel();
  await source.listenersReach(0);
});

test('FetchX509Bundles is keyed by the trust domain\'s SPIFFE ID and streams bundle changes', async () => {
  const s = openStream(api.client, 'FetchX509Bundles');
  const res = await s.next();
  assert.deepEqual(Object.keys(res.bundles), [`spiffe://${TD}`]);
  assert.deepEqual(res.bundles[`spiffe://${TD}`], Buffer.from(rootCert.rawData));
  assert.deepEqual(res.crl, source.current()!.crl);
  source.push({ ...source.current()!, crl: [] });
  assert.deepEqual((await s.next()).crl, []);
  s.call.cancel();
  await source.listenersReach(0);
});

test('FetchJWTBundles serves the JWKS keyed by trust domain, without keys of other uses', async () => {
  const s = openStream(api.client, 'FetchJWTBundles');
  const res = await s.next();
  s.call.cancel();
  await source.listenersReach(0);
  assert.deepEqual(Object.keys(res.bundles), [`spiffe://${TD}`]);
  const jwks = JSON.parse(res.bundles[`spiffe://${TD}`].toString());
  assert.deepEqual(jwks.keys.map((k: JWK) => k.kid), ['jwt-1']);
  // A plain RFC 7517 key set, as SPIRE serves it: no SPIFFE-only `use` values or members.
  assert.deepEqual(Object.keys(jwks), ['keys']);
  assert.equal(jwks.keys[0].use, undefined);
});

test('FetchJWTSVID needs an audience, refuses another identity, and returns a token the served JWT bundle verifies', async () => {
  for (const audience of [[], ['']]) {
    const err = await unary(api.client, 'FetchJWTSVID', { audience }).then(() => null, (e: ServiceError) => e);
    assert.equal(err?.code, status.INVALID_ARGUMENT);
  }
  const denied = await unary(api.client, 'FetchJWTSVID', { audience: ['db'], spiffe_id: `spiffe://${TD}/someone-else` }).then(() => null, (e: ServiceError) => e);
  assert.equal(denied?.code, status.PERMISSION_DENIED);

  const res = await unary(api.client, 'FetchJWTSVID', { audience: ['db', 'cache'], spiffe_id: ID });
  assert.equal(res.svids.length, 1);
  assert.equal(res.svids[0].spiffe_id, ID);
  // API §6.3: a legacy validator checks the token with the JWT bundle from FetchJWTBundles.
  const bundles = openStream(api.client, 'FetchJWTBundles');
  const jwks = JSON.parse((await bundles.next()).bundles[`spiffe://${TD}`].toString());
  bundles.call.cancel();
  await source.listenersReach(0);
  const { payload } = await jwtVerify(res.svids[0].svid, createLocalJWKSet(jwks), { audience: 'cache' });
  assert.equal(payload.sub, ID);
});

test('ValidateJWTSVID returns the SPIFFE ID and every claim as a google.protobuf.Struct', async () => {
  const { svids: [jwt] } = await unary(api.client, 'FetchJWTSVID', { audience: ['db'] });
  const res = await unary(api.client, 'ValidateJWTSVID', { audience: 'db', svid: jwt.svid });
  assert.equal(res.spiffe_id, ID);
  assert.deepEqual(fromStruct(res.claims), decodeJwt(jwt.svid));
  assert.deepEqual(fromStruct(res.claims).aegis, EXTRA_CLAIMS.aegis);
});

test('ValidateJWTSVID: missing fields and invalid tokens are InvalidArgument', async () => {
  const { svids: [jwt] } = await unary(api.client, 'FetchJWTSVID', { audience: ['db'] });
  const cases = [{ audience: '', svid: jwt.svid }, { audience: 'db', svid: '' }, { audience: 'not-db', svid: jwt.svid }, { audience: 'db', svid: `${jwt.svid.slice(0, -4)}AAAA` }];
  for (const req of cases) {
    const err = await unary(api.client, 'ValidateJWTSVID', req).then(() => null, (e: ServiceError) => e);
    assert.equal(err?.code, status.INVALID_ARGUMENT, JSON.stringify(req.audience));
  }
});

test('toStruct: undefined members are left out as in JSON; NaN has no Struct form', () => {
  assert.deepEqual(toStruct({ a: undefined, b: [undefined] }), { fields: { b: { listValue: { values: [{ nullValue: 'NULL_VALUE' }] } } } });
  assert.throws(() => toStruct({ n: Number.NaN }), TypeError);
});

test('before the agent has attested every RPC answers Unavailable (Endpoint §6: still initializing)', async () => {
  const early = await serve(new TestSource(null));
  for (const rpc of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) assert.equal((await openStream(early.client, rpc).error()).code, status.UNAVAILABLE, rpc);
  const fetch = await unary(early.client, 'FetchJWTSVID', { audience: ['db'] }).then(() => null, (e: ServiceError) => e);
  assert.equal(fetch?.code, status.UNAVAILABLE);
  const validate = await unary(early.client, 'ValidateJWTSVID', { audience: 'db', svid: 'x.y.z' }).then(() => null, (e: ServiceError) => e);
  assert.equal(validate?.code, status.UNAVAILABLE);
});

test('an expired X509-SVID is not served: Unavailable until the agent renews it', async () => {
  const stale = await serve(new TestSource(await issueSvid(ID, new Date(Date.now() - 1_000))));
  assert.equal((await openStream(stale.client, 'FetchX509SVID').error()).code, status.UNAVAILABLE);
});

test('close() ends open streams with Unavailable, drops their listeners and removes the socket', async () => {
  const own = new TestSource(state);
  const srv = await serve(own);
  const s = openStream(srv.client, 'FetchX509SVID');
  await s.next();
  await withTimeout(srv.close(), 'close()');
  assert.equal((await s.error()).code, status.UNAVAILABLE);
  assert.equal(own.listenerCount, 0);
  assert.equal(existsSync(srv.socket), false);
});

test('a stale socket left by a killed agent is replaced; a live one or a regular file is not', async () => {
  const dir = tempDir('wl-stale');
  const socket = join(dir, 'agent.sock');
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  onCleanup(() => child.kill('SIGKILL'));
  await withTimeout(once(child.stdout!, 'data'), 'the other listener');
  await assert.rejects(startWorkloadApi({ socketPath: `unix://${socket}`, source }), WorkloadSocketError);
  child.kill('SIGKILL');
  await withTimeout(once(child, 'exit'), 'the other listener to die');
  assert.ok(lstatSync(socket).isSocket(), 'SIGKILL leaves the socket file behind');
  const srv = await startWorkloadApi({ socketPath: `unix://${socket}`, source });
  await srv.close();

  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'data');
  await assert.rejects(startWorkloadApi({ socketPath: `unix://${file}`, source }), WorkloadSocketError);
  await assert.rejects(startWorkloadApi({ socketPath: 'relative.sock', source }), WorkloadSocketError);
});

import 'reflect-metadata';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, importJWK, jwtVerify, type JWK } from 'jose';
import { makeKeyAndCsr } from '../../src/identity/csr-make.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import {
  createJoinToken, errorOf, identityClient, newWorkload, renewOverMtls, type IdentityCall, type IdResult, type SvidData,
} from './identity-client.js';

// Acceptance tests of the identity API (src/identity/routes.ts) over real HTTPS: attestation with join tokens,
// renewal over mutual TLS, revocation, the public trust material, and JWT-SVIDs.

const TD = 'aegis.local';
let s: InProcessServer;
let call: IdentityCall;
let dir: string;
let auditLog: string;
/** Every call to identity/attest/join-token this file makes, with its status (checked against events and audit). */
const attestCalls: { status: number; withToken: boolean }[] = [];
/** The workload tokens those calls returned: none may appear in clear in the audit log. */
const workloadTokens: string[] = [];

before(async () => {
  s = await startTestServer({ tls: true });
  assert.ok(s.caFile, 'the TLS test server has a CA file');
  const raw = identityClient(s.address, s.caFile, s.rootToken);
  call = async (method, path, o) => {
    const r = await raw(method, path, o);
    if (path === 'identity/attest/join-token') {
      attestCalls.push({ status: r.status, withToken: (o?.body as { join_token?: string })?.join_token !== undefined });
      if (r.body?.auth?.client_token) workloadTokens.push(r.body.auth.client_token);
    }
    return r;
  };
  dir = tempDir('identity-api');
  auditLog = join(dir, 'audit.log');
  const r = await call('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: auditLog } } });
  assert.equal(r.status, 204, errorOf(r));
});

/** POST identity/attest/join-token without a token (the join token is the credential). */
function attest(body: Record<string, unknown>): Promise<IdResult> {
  return call('POST', 'identity/attest/join-token', { token: null, body });
}

function cert(pem: string): X509Certificate {
  return new X509Certificate(pem);
}

/** The URI SANs of a certificate. */
function uris(c: X509Certificate): string[] {
  return (c.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:')).map((n) => n.slice(4));
}

function openssl(args: string[], input?: Buffer): { code: number | null; out: string } {
  const r = spawnSync('openssl', args, { cwd: dir, input, timeout: 20_000 });
  return { code: r.status, out: `${r.stdout.toString()}${r.stderr.toString()}` };
}

/** A CSR made by the openssl CLI (an independent producer) with the given key and extra `req` arguments. */
function opensslCsr(name: string, keyArgs: string[], extra: string[] = []): string {
  const r = openssl(['req', '-new', ...keyArgs, '-nodes', '-keyout', `${name}.key`, '-subj', '/CN=workload', ...extra, '-out', `${name}.csr`]);
  assert.equal(r.code, 0, r.out);
  return readFileSync(join(dir, `${name}.csr`), 'utf8');
}
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

async function certCount(): Promise<number> {
  return (await s.core.identity.records.list()).length;
}

async function newestEvent(type: string) {
  const [e] = await s.core.events.recent(1, type);
  assert.ok(e, `a ${type} security event`);
  return e;
}

describe('attestation with a join token', () => {
  it('issues an X.509-SVID for spiffe://<td>/ns/<ns>/svc/<svc> and a workload token', async () => {
    const jt = await createJoinToken(call, 'api', 'payments');
    assert.equal(jt.spiffe_id, `spiffe://${TD}/ns/payments/svc/api`);
    assert.match(jt.token, /^aegis-join\./);
    const { keyPem, csrPem } = await makeKeyAndCsr();
    const r = await attest({ join_token: jt.token, csr: csrPem });
    assert.equal(r.status, 200, errorOf(r));
    const svid = r.body.data as SvidData;
    assert.equal(svid.spiffe_id, jt.spiffe_id);
    const leaf = cert(svid.certificate);
    assert.deepEqual(uris(leaf), [jt.spiffe_id]);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)), 'the certificate carries the workload’s own key');
    assert.equal(svid.ca_chain.length, 1);
    assert.ok(leaf.checkIssued(cert(svid.ca_chain[0]!)) && leaf.verify(cert(svid.ca_chain[0]!).publicKey));
    assert.ok(Math.abs(svid.expiration - (Date.now() / 1000 + 3600)) < 60, 'default lifetime 1h');
    assert.match(r.body.auth.client_token, /\S{16,}/);
    assert.deepEqual(r.body.auth.policies, ['workload', 'default']);

    // Independent check: openssl builds leaf → intermediate → root from the files an agent would write.
    writeFileSync(join(dir, 'bundle.pem'), svid.bundle);
    writeFileSync(join(dir, 'chain.pem'), svid.ca_chain.join(''));
    writeFileSync(join(dir, 'leaf.pem'), svid.certificate);
    const v = openssl(['verify', '-CAfile', 'bundle.pem', '-untrusted', 'chain.pem', 'leaf.pem']);
    assert.equal(v.code, 0, v.out);
    assert.match(v.out, /leaf\.pem: OK/);

    // The workload token is the attested identity and nothing more.
    const self = await call('POST', 'auth/token/lookup', { body: { token: r.body.auth.client_token } });
    assert.equal(self.status, 200, errorOf(self));
    assert.equal(self.body.data.entity_id, jt.spiffe_id);
    assert.deepEqual(self.body.data.policies, ['workload', 'default']);
    assert.ok(Math.abs(self.body.data.ttl - 3600) < 60, 'the workload token lives as long as the SVID');
    assert.equal((await call('GET', 'identity/ca', { token: r.body.auth.client_token })).status, 403, 'a workload token cannot read the CA');
  });

  it('the CSR does not choose the identity: a subject naming another workload is ignored', async () => {
    const jt = await createJoinToken(call, 'web');
    const csr = opensslCsr('subject', EC_KEY, ['-subj', `/CN=spiffe:\\/\\/${TD}\\/ns\\/kube-system\\/svc\\/admin/O=evil`]);
    const r = await attest({ join_token: jt.token, csr });
    assert.equal(r.status, 200, errorOf(r));
    const leaf = cert(r.body.data.certificate);
    assert.deepEqual(uris(leaf), [`spiffe://${TD}/ns/default/svc/web`]);
    assert.doesNotMatch(leaf.subject, /admin|evil/);
  });

  it('a CSR may name its own SPIFFE ID as URI SAN; asking for another one is refused (400), nothing is issued and the token stays usable', async () => {
    const jt = await createJoinToken(call, 'web');
    const before = await certCount();
    const other = opensslCsr('other-san', EC_KEY, ['-addext', `subjectAltName=URI:spiffe://${TD}/ns/default/svc/admin`]);
    const refused = await attest({ join_token: jt.token, csr: other });
    assert.equal(refused.status, 400);
    assert.match(errorOf(refused), /URI SAN "spiffe:\/\/aegis\.local\/ns\/default\/svc\/admin".*spiffe:\/\/aegis\.local\/ns\/default\/svc\/web/);
    assert.equal(await certCount(), before);

    const own = opensslCsr('own-san', EC_KEY, ['-addext', `subjectAltName=URI:spiffe://${TD}/ns/default/svc/web`]);
    const ok = await attest({ join_token: jt.token, csr: own });
    assert.equal(ok.status, 200, `bad input must not spend the join token: ${errorOf(ok)}`);
    assert.deepEqual(uris(cert(ok.body.data.certificate)), [`spiffe://${TD}/ns/default/svc/web`]);
  });

  it('a join token is single-use: the second use is refused (403)', async () => {
    const jt = await createJoinToken(call, 'once');
    const { csrPem } = await makeKeyAndCsr();
    assert.equal((await attest({ join_token: jt.token, csr: csrPem })).status, 200);
    const again = await attest({ join_token: jt.token, csr: csrPem });
    assert.equal(again.status, 403);
    assert.match(errorOf(again), /join token refused: unknown or already used/);
  });

  it('an expired join token is refused (403)', async () => {
    const jt = await createJoinToken(call, 'late', 'default', '1s');
    // Time must pass: until the whole second after the reported expiration (it is rounded down to seconds).
    await new Promise((r) => setTimeout(r, Math.max(0, (jt.expiration + 1) * 1000 - Date.now()) + 20));
    const { csrPem } = await makeKeyAndCsr();
    const r = await attest({ join_token: jt.token, csr: csrPem });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /join token refused: expired at/);
  });

  it('a token bound to one service is refused for another (namespace/service given)', async () => {
    const jt = await createJoinToken(call, 'db');
    const { csrPem } = await makeKeyAndCsr();
    const r = await attest({ join_token: jt.token, service: 'web', csr: csrPem });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /bound to spiffe:\/\/aegis\.local\/ns\/default\/svc\/db, not spiffe:\/\/aegis\.local\/ns\/default\/svc\/web/);
    assert.equal((await attest({ join_token: jt.token, service: 'db', csr: csrPem })).status, 200);
  });

  it('50 parallel uses of one join token: exactly one succeeds and one certificate is issued (the rest 403)', async () => {
    const jt = await createJoinToken(call, 'race');
    const { csrPem } = await makeKeyAndCsr();
    const before = await certCount();
    const results = await Promise.all(Array.from({ length: 50 }, () => attest({ join_token: jt.token, csr: csrPem })));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, ...Array(49).fill(403)]);
    assert.equal(await certCount(), before + 1);
  });
});

describe('renewal over mutual TLS', () => {
  it('the SVID alone (no token) renews: a new SVID with the same SPIFFE ID', async () => {
    const w = await newWorkload(call, 'renew');
    const { csrPem, keyPem } = await makeKeyAndCsr();
    const r = await renewOverMtls(call, w, csrPem);
    assert.equal(r.status, 200, errorOf(r));
    const renewed = r.body.data as SvidData;
    assert.equal(renewed.spiffe_id, w.spiffeId);
    assert.notEqual(renewed.serial_number, w.svid.serial_number);
    assert.ok(cert(renewed.certificate).checkPrivateKey(createPrivateKey(keyPem)));
    const e = await newestEvent('attest.svid');
    assert.deepEqual([e.outcome, e.subject, e.details?.serial_number], ['success', w.spiffeId, renewed.serial_number]);

    // The renewed one renews in turn.
    const next = await renewOverMtls(call, { keyPem, certPem: renewed.certificate + renewed.ca_chain.join('') }, (await makeKeyAndCsr()).csrPem);
    assert.equal(next.status, 200, errorOf(next));
  });

  it('without a token and without a client certificate the request is refused (403)', async () => {
    const r = await call('POST', 'identity/svid', { token: null, body: { csr: (await makeKeyAndCsr()).csrPem } });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /missing client token/);
  });

  it('a certificate from another CA is refused (403), even with a SPIFFE ID of this trust domain', async () => {
    const key = join(dir, 'foreign.key');
    const crt = join(dir, 'foreign.crt');
    const g = openssl(['req', '-x509', ...EC_KEY, '-nodes', '-keyout', key, '-out', crt, '-days', '1', '-subj', '/CN=foreign',
      '-addext', `subjectAltName=URI:spiffe://${TD}/ns/default/svc/renew`]);
    assert.equal(g.code, 0, g.out);
    const r = await renewOverMtls(call, { keyPem: readFileSync(key, 'utf8'), certPem: readFileSync(crt, 'utf8') }, (await makeKeyAndCsr()).csrPem);
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /not issued by this trust domain/);
  });

  it('a revoked SVID (revoked by serial) cannot renew (403)', async () => {
    const w = await newWorkload(call, 'stolen');
    const rv = await call('POST', 'identity/revoke', { body: { serial_number: w.svid.serial_number } });
    assert.equal(rv.status, 200, errorOf(rv));
    assert.equal(rv.body.data.serial_number, w.svid.serial_number);
    const r = await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem);
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /is revoked/);
    const e = await newestEvent('attest.svid');
    assert.deepEqual([e.outcome, e.subject], ['failure', w.spiffeId]);
    // Only that certificate: the identity itself may still attest.
    const again = await newWorkload(call, 'stolen');
    assert.equal(again.spiffeId, w.spiffeId);
  });

  it('revoking a SPIFFE ID refuses renewal and new attestation (naming the revocation) until it is restored', async () => {
    const w = await newWorkload(call, 'compromised');
    const second = await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem);
    assert.equal(second.status, 200);
    const rv = await call('POST', 'identity/revoke', { body: { spiffe_id: w.spiffeId } });
    assert.equal(rv.status, 200, errorOf(rv));
    assert.equal(rv.body.data.revoked_certificates, 2, 'both live certificates of the identity are revoked');

    const renew = await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem);
    assert.equal(renew.status, 403);
    assert.match(errorOf(renew), /revoked/);
    const byToken = await call('POST', 'identity/svid', { token: w.token, body: { csr: (await makeKeyAndCsr()).csrPem } });
    assert.equal(byToken.status, 403, 'nor with the workload token from its attestation');
    assert.match(errorOf(byToken), /was revoked at/);

    const jt = await createJoinToken(call, 'compromised');
    const withCsr = await attest({ join_token: jt.token, csr: (await makeKeyAndCsr()).csrPem });
    assert.equal(withCsr.status, 403);
    assert.match(errorOf(withCsr), /spiffe:\/\/aegis\.local\/ns\/default\/svc\/compromised was revoked at/);
    const e = await newestEvent('attest.join_token');
    assert.deepEqual([e.outcome, e.subject], ['failure', w.spiffeId]);
    assert.match(e.reason!, /was revoked at/);
    // Nor is a workload token handed out for it when no CSR is sent.
    const jt2 = await createJoinToken(call, 'compromised');
    const tokenOnly = await attest({ join_token: jt2.token });
    assert.equal(tokenOnly.status, 403, 'a revoked identity gets no workload token either');
    assert.match(errorOf(tokenOnly), /was revoked at/);

    const restore = await call('POST', 'identity/restore', { body: { spiffe_id: w.spiffeId } });
    assert.equal(restore.status, 200, errorOf(restore));
    const back = await newWorkload(call, 'compromised');
    assert.equal(back.spiffeId, w.spiffeId);
    // The old certificates stay revoked.
    assert.equal((await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem)).status, 403);
    assert.equal((await renewOverMtls(call, back, (await makeKeyAndCsr()).csrPem)).status, 200);
    const notRevoked = await call('POST', 'identity/restore', { body: { spiffe_id: w.spiffeId } });
    assert.equal(notRevoked.status, 400);
    assert.match(errorOf(notRevoked), /is not revoked/);
  });
});

describe('bad input is refused with a clear message, and nothing is issued', () => {
  const csrs: Record<string, () => Promise<string>> = {};
  let good: string;

  before(async () => {
    good = (await makeKeyAndCsr()).csrPem;
    const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 3] ^= 0x01; // inside the signature's last INTEGER: still DER, no longer a valid signature
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    Object.assign(csrs, {
      garbage: async () => 'this is not a certificate request',
      oversized: async () => `-----BEGIN CERTIFICATE REQUEST-----\n${'QUFB'.repeat(4500)}\n-----END CERTIFICATE REQUEST-----\n`,
      'CA:true': async () => opensslCsr('ca-true', EC_KEY, ['-addext', 'basicConstraints=critical,CA:TRUE']),
      RSA: async () => opensslCsr('rsa', ['-newkey', 'rsa:2048']),
      'wrong signature': async () => forged,
    });
  });

  const cases: [name: string, body: () => Promise<Record<string, unknown>>, message: RegExp][] = [
    ['garbage CSR', async () => ({ csr: await csrs.garbage!() }), /CSR is not PEM/],
    ['oversized CSR (> 16 KiB)', async () => ({ csr: await csrs.oversized!() }), /CSR is larger than 16 KiB/],
    ['CSR asking for CA:true', async () => ({ csr: await csrs['CA:true']!() }), /CA:true; a workload certificate cannot be a CA/],
    ['CSR with an RSA key', async () => ({ csr: await csrs.RSA!() }), /unsupported key type RSA: only EC P-256 and P-384/],
    ['CSR whose signature does not verify', async () => ({ csr: await csrs['wrong signature']!() }), /CSR signature does not verify/],
    ['ttl below 5m', async () => ({ csr: good, ttl: '1m' }), /ttl 60s is out of range: allowed 300s … 86400s/],
    ['ttl above 24h', async () => ({ csr: good, ttl: '48h' }), /ttl 172800s is out of range/],
  ];

  for (const [name, body, message] of cases) {
    it(`attestation: ${name} → 400; the join token is not spent`, async () => {
      const jt = await createJoinToken(call, 'badinput');
      const before = await certCount();
      const r = await attest({ join_token: jt.token, ...(await body()) });
      assert.equal(r.status, 400, errorOf(r));
      assert.match(errorOf(r), message);
      assert.equal(r.body.auth, undefined, 'no workload token');
      assert.equal(await certCount(), before);
      const e = await newestEvent('attest.join_token');
      // A ttl out of range is refused before the token is looked up, so its event names no identity.
      assert.deepEqual([e.outcome, e.subject], ['failure', name.startsWith('ttl') ? undefined : `spiffe://${TD}/ns/default/svc/badinput`]);
      assert.match(e.reason!, message);
      assert.equal((await attest({ join_token: jt.token, csr: good })).status, 200, 'the corrected request succeeds with the same token');
    });

    it(`renewal: ${name} → 400`, async () => {
      const w = await newWorkload(call, 'renew-bad');
      const before = await certCount();
      const r = await call('POST', 'identity/svid', { token: w.token, body: await body() });
      assert.equal(r.status, 400, errorOf(r));
      assert.match(errorOf(r), message);
      assert.equal(await certCount(), before);
    });
  }

  it('renewal without a csr → 400 naming the field', async () => {
    const w = await newWorkload(call, 'renew-bad');
    const before = await certCount();
    const r = await call('POST', 'identity/svid', { token: w.token, body: {} });
    assert.equal(r.status, 400);
    assert.match(errorOf(r), /csr is required/);
    assert.equal(await certCount(), before);
  });

  it('attestation without a csr spends the token for a workload token only (no certificate)', async () => {
    const jt = await createJoinToken(call, 'token-only');
    const before = await certCount();
    const r = await attest({ join_token: jt.token });
    assert.equal(r.status, 200, errorOf(r));
    assert.deepEqual(r.body.data, { spiffe_id: `spiffe://${TD}/ns/default/svc/token-only` });
    assert.deepEqual(r.body.auth.policies, ['workload', 'default']);
    assert.equal(await certCount(), before);
  });

  it('attestation without a csr still bounds the workload token’s ttl (48h → 400, token not spent)', async () => {
    const jt = await createJoinToken(call, 'token-only');
    const r = await attest({ join_token: jt.token, ttl: '48h' });
    assert.equal(r.status, 400);
    assert.match(errorOf(r), /ttl 172800s is out of range/);
    assert.equal((await attest({ join_token: jt.token, ttl: '10m' })).status, 200);
  });

  it('attestation without a join token → 400 naming the field', async () => {
    const r = await attest({ csr: good });
    assert.equal(r.status, 400);
    assert.match(errorOf(r), /missing required field "join_token"/);
  });

  it('a string that is not a join token → 403', async () => {
    const r = await attest({ join_token: 'hunter2', csr: good });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /not an Aegis join token/);
  });
});

describe('public trust material (no token)', () => {
  it('GET identity/bundle: the roots as PEM', async () => {
    const r = await call('GET', 'identity/bundle', { token: null });
    assert.equal(r.status, 200, r.text);
    assert.match(String(r.headers['content-type']), /application\/x-pem-file/);
    const root = cert(r.text);
    assert.equal(root.ca, true);
    assert.ok(root.checkIssued(root), 'self-signed');
    assert.deepEqual(uris(root), [`spiffe://${TD}`]);
  });

  it('GET identity/bundle/spiffe: x509-svid keys with x5c, jwt-svid keys with kid, spiffe_sequence', async () => {
    const r = await call('GET', 'identity/bundle/spiffe', { token: null });
    assert.equal(r.status, 200, r.text);
    const b = r.body as { keys: JWK[]; spiffe_sequence: number };
    assert.ok(Number.isInteger(b.spiffe_sequence) && b.spiffe_sequence >= 1);
    const x = b.keys.filter((k) => k.use === 'x509-svid');
    const j = b.keys.filter((k) => k.use === 'jwt-svid');
    assert.equal(x.length, 1);
    assert.ok(j.length >= 1);
    const bundle = (await call('GET', 'identity/bundle', { token: null })).text;
    assert.equal(x[0]!.x5c!.length, 1);
    assert.ok(new X509Certificate(Buffer.from(x[0]!.x5c![0]!, 'base64')).raw.equals(cert(bundle).raw), 'x5c is the root');
    assert.ok(createPublicKey({ key: x[0]!, format: 'jwk' }).equals(cert(bundle).publicKey));
    assert.ok(j.every((k) => typeof k.kid === 'string' && k.kid.length > 0 && k.d === undefined));
  });

  it('GET identity/jwks and /.well-known/openid-configuration', async () => {
    const jwks = await call('GET', 'identity/jwks', { token: null });
    assert.equal(jwks.status, 200, jwks.text);
    assert.ok(jwks.body.keys.length >= 1 && jwks.body.keys.every((k: JWK) => k.kid && k.d === undefined));
    const oidc = await call('GET', '/.well-known/openid-configuration', { token: null });
    assert.equal(oidc.status, 200, oidc.text);
    assert.equal(oidc.body.issuer, s.address);
    assert.equal(oidc.body.jwks_uri, `${s.address}/v1/identity/jwks`);
  });

  it('GET identity/crl: a DER CRL openssl reads, listing a revoked serial', async () => {
    const w = await newWorkload(call, 'crl');
    assert.equal((await call('POST', 'identity/revoke', { body: { serial_number: w.svid.serial_number } })).status, 200);
    const r = await call('GET', 'identity/crl', { token: null });
    assert.equal(r.status, 200, r.text);
    assert.match(String(r.headers['content-type']), /application\/pkix-crl/);
    const out = openssl(['crl', '-inform', 'DER', '-noout', '-text'], r.bytes);
    assert.equal(out.code, 0, out.out);
    assert.match(out.out, new RegExp(`Serial Number: ${w.svid.serial_number.replace(/:/g, '').toUpperCase()}`));
    // Signed by the intermediate that issued the certificate.
    writeFileSync(join(dir, 'crl.der'), r.bytes);
    writeFileSync(join(dir, 'crl-issuer.pem'), w.svid.ca_chain[0]!);
    const v = openssl(['crl', '-inform', 'DER', '-in', 'crl.der', '-CAfile', 'crl-issuer.pem', '-noout']);
    assert.equal(v.code, 0, v.out);
    assert.match(v.out, /verify OK/);
  });

  it('nothing else answers without a token', async () => {
    for (const [m, p] of [['GET', 'identity/ca'], ['GET', 'identity/revocations'], ['POST', 'identity/join-token'], ['POST', 'identity/ca/rotate-intermediate']] as const) {
      assert.equal((await call(m, p, { token: null, body: m === 'POST' ? { service: 'x' } : undefined })).status, 403, `${m} ${p}`);
    }
  });
});

describe('JWT-SVIDs', () => {
  let w: Awaited<ReturnType<typeof newWorkload>>;
  let jwt: string;

  before(async () => {
    w = await newWorkload(call, 'jwt');
    const r = await call('POST', 'identity/jwt-svid', { token: w.token, body: { audience: ['db'] } });
    assert.equal(r.status, 200, errorOf(r));
    assert.equal(r.body.data.spiffe_id, w.spiffeId);
    jwt = r.body.data.token;
  });

  it('validates for its audience and is refused (400) for another', async () => {
    const ok = await call('POST', 'identity/jwt-svid/validate', { token: w.token, body: { token: jwt, audience: 'db' } });
    assert.equal(ok.status, 200, errorOf(ok));
    assert.equal(ok.body.data.spiffe_id, w.spiffeId);
    const other = await call('POST', 'identity/jwt-svid/validate', { token: w.token, body: { token: jwt, audience: 'other' } });
    assert.equal(other.status, 400);
    assert.match(errorOf(other), /audience mismatch/);
  });

  it('verifies with jose against the JWKS served at /v1/identity/jwks', async () => {
    const jwks = (await call('GET', 'identity/jwks', { token: null })).body as { keys: JWK[] };
    const { payload, protectedHeader } = await jwtVerify(jwt, async (header) => {
      const jwk = jwks.keys.find((k) => k.kid === header.kid);
      assert.ok(jwk, `a key with kid ${header.kid}`);
      return importJWK(jwk, 'ES256');
    }, { audience: 'db', issuer: s.address, algorithms: ['ES256'] });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, w.spiffeId);
  });

  it('a stock OIDC consumer verifies with the keys at the discovery document’s jwks_uri', async () => {
    const discovery = (await call('GET', '/.well-known/openid-configuration', { token: null })).body as { jwks_uri: string };
    const jwks = (await call('GET', new URL(discovery.jwks_uri).pathname, { token: null })).body as { keys: JWK[] };
    const { payload } = await jwtVerify(jwt, createLocalJWKSet(jwks), { audience: 'db' });
    assert.equal(payload.sub, w.spiffeId);
  });

  it('an SVID over mutual TLS gets a JWT-SVID too', async () => {
    const r = await call('POST', 'identity/jwt-svid', { token: null, cert: w.certPem, key: w.keyPem, body: { audience: 'db,cache' } });
    assert.equal(r.status, 200, errorOf(r));
    assert.equal(r.body.data.spiffe_id, w.spiffeId);
  });

  it('a token with no attested identity (root) gets none', async () => {
    const r = await call('POST', 'identity/jwt-svid', { body: { audience: ['db'] } });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /no attested workload identity/);
  });
});

describe('every attestation is recorded', () => {
  it('each outcome is a security event with the client address', async () => {
    const events = await s.core.events.recent(10_000, 'attest.join_token');
    assert.equal(events.filter((e) => e.outcome === 'success').length, attestCalls.filter((c) => c.status === 200).length, 'one success event per 200');
    // Every refusal of a request that carried a join token is a failure event (one without is malformed, audited only).
    assert.equal(events.filter((e) => e.outcome === 'failure').length, attestCalls.filter((c) => c.status !== 200 && c.withToken).length);
    assert.ok(events.every((e) => e.client_ip === '127.0.0.1'));
  });

  it('each call is in the audit log, request and response, and neither join tokens nor workload tokens appear in clear', async () => {
    const lines = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; request: { path: string }; response?: { status: number } });
    const ours = lines.filter((l) => l.request.path === 'identity/attest/join-token');
    assert.equal(ours.filter((l) => l.type === 'request').length, attestCalls.length);
    const logged = ours.filter((l) => l.type === 'response').map((l) => l.response!.status).sort();
    assert.deepEqual(logged, attestCalls.map((c) => c.status).sort());
    const text = readFileSync(auditLog, 'utf8');
    assert.doesNotMatch(text, /aegis-join\./, 'join tokens are HMACed');
    assert.ok(workloadTokens.length > 0);
    for (const t of workloadTokens) assert.ok(!text.includes(t), 'workload tokens are HMACed');
  });
});

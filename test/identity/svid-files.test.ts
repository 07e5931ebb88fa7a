import 'reflect-metadata';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { BUNDLE_FILE, SVID_FILE, SVID_KEY_FILE, writeSvidFiles } from '../../src/identity/agent/svid-files.js';
import type { WorkloadState } from '../../src/identity/agent/workload-api.js';
import { tempDir } from '../helpers/temp.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const ID = 'spiffe://example.org/workload/web';
const day = 86_400_000;
type Keys = webcrypto.CryptoKeyPair;
const newKeys = async () => (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as Keys;
const caExtensions = (pathLen?: number) => [new x509.BasicConstraintsExtension(true, pathLen, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)];

const root = await newKeys();
const inter = await newKeys();
const rootCert = await x509.X509CertificateGenerator.createSelfSigned({
  name: 'CN=Aegis Test Root', keys: root as never, signingAlgorithm: EC, notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + 30 * day), extensions: caExtensions(),
});
const interCert = await x509.X509CertificateGenerator.create({
  subject: 'CN=Aegis Test Intermediate', issuer: rootCert.subject, publicKey: inter.publicKey as never, signingKey: root.privateKey as never, signingAlgorithm: EC,
  notBefore: new Date(Date.now() - day), notAfter: new Date(Date.now() + 10 * day), extensions: caExtensions(0),
});

async function issueSvid(): Promise<WorkloadState> {
  const keys = await newKeys();
  const notAfter = new Date(Date.now() + 3_600_000);
  const leaf = await x509.X509CertificateGenerator.create({
    subject: 'O=Aegis', issuer: interCert.subject, publicKey: keys.publicKey as never, signingKey: inter.privateKey as never, signingAlgorithm: EC,
    notBefore: new Date(Date.now() - 60_000), notAfter,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }], true)],
  });
  return {
    trustDomain: 'example.org',
    svid: { spiffeId: ID, chain: [Buffer.from(leaf.rawData), Buffer.from(interCert.rawData)], key: Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), expiresAt: notAfter },
    bundle: [Buffer.from(rootCert.rawData)],
    crl: [],
    jwtBundle: Buffer.from('{"keys":[]}'),
  };
}

function pemCertificates(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+?-----END CERTIFICATE-----\n/g) ?? [];
  assert.equal(blocks.join(''), text, 'only CERTIFICATE blocks, nothing between them');
  return blocks.map((b) => new X509Certificate(b));
}

test('writes the leaf then its intermediates, the matching PKCS#8 key (0600) and the roots, in a new 0700 directory', async () => {
  const dir = join(tempDir('svid-files'), 'nested', 'svid');
  const state = await issueSvid();
  await writeSvidFiles(dir, state);

  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const [leaf, intermediate, ...rest] = pemCertificates(readFileSync(join(dir, SVID_FILE), 'utf8'));
  assert.equal(rest.length, 0);
  assert.deepEqual(leaf!.raw, state.svid.chain[0]);
  assert.equal(leaf!.subjectAltName, `URI:${ID}`);
  assert.ok(leaf!.checkIssued(intermediate!));

  const keyPem = readFileSync(join(dir, SVID_KEY_FILE), 'utf8');
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.ok(leaf!.checkPrivateKey(createPrivateKey(keyPem)));
  assert.equal(statSync(join(dir, SVID_KEY_FILE)).mode & 0o777, 0o600);

  const roots = pemCertificates(readFileSync(join(dir, BUNDLE_FILE), 'utf8'));
  assert.deepEqual(roots.map((r) => r.raw), state.bundle);
  // OpenSSL, as a workload would use the files: the leaf chains through svid.pem's intermediate to bundle.pem.
  const out = execFileSync('openssl', ['verify', '-CAfile', join(dir, BUNDLE_FILE), '-untrusted', join(dir, SVID_FILE), join(dir, SVID_FILE)], { encoding: 'utf8', timeout: 10_000 });
  assert.match(out, /: OK$/m);
  assert.deepEqual(readdirSync(dir).sort(), [BUNDLE_FILE, SVID_FILE, SVID_KEY_FILE].sort(), 'no temp files left behind');
});

test('a renewal replaces each file by rename (a new inode), never by rewriting the one a reader has open', async () => {
  const dir = tempDir('svid-renew');
  await writeSvidFiles(dir, await issueSvid());
  const before = Object.fromEntries([SVID_FILE, SVID_KEY_FILE, BUNDLE_FILE].map((f) => [f, statSync(join(dir, f)).ino]));
  const renewed = await issueSvid();
  await writeSvidFiles(dir, renewed);
  for (const f of [SVID_FILE, SVID_KEY_FILE, BUNDLE_FILE]) assert.notEqual(statSync(join(dir, f)).ino, before[f], f);
  const [leaf] = pemCertificates(readFileSync(join(dir, SVID_FILE), 'utf8'));
  assert.deepEqual(leaf!.raw, renewed.svid.chain[0]);
  assert.ok(leaf!.checkPrivateKey(createPrivateKey(readFileSync(join(dir, SVID_KEY_FILE)))));
  assert.equal(readdirSync(dir).length, 3);
});

test('an existing directory keeps its mode; an SVID without a certificate is refused and nothing is written', async () => {
  const dir = join(tempDir('svid-existing'), 'shared');
  mkdirSync(dir);
  chmodSync(dir, 0o750); // not through mkdir's mode, which the umask narrows
  const state = await issueSvid();
  await assert.rejects(writeSvidFiles(dir, { ...state, svid: { ...state.svid, chain: [] } }), /no certificate/);
  assert.deepEqual(readdirSync(dir), []);
  await writeSvidFiles(dir, state);
  assert.equal(statSync(dir).mode & 0o777, 0o750);
  assert.equal(statSync(join(dir, SVID_KEY_FILE)).mode & 0o777, 0o600);
});

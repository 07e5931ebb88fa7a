import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BadRequestError } from '../../src/core/errors.js';
import { parseCsr, type ParsedCsr } from '../../src/identity/csr.js';
import { formatSerial, LeafBuilder, type LeafIssuer } from '../../src/identity/leaf-builder.js';
import { tempDir } from '../helpers/temp.js';
import { DAY, generateKeyPair, makeCa, opensslVerify, peculiarCsr, toPem, x509, type TestCa } from './pki-fixtures.js';

const ID = 'spiffe://example.org/ns/default/svc/web';

function issuerOf(ca: TestCa): LeafIssuer {
  return { certDer: ca.intermediateDer, key: ca.issuerKey };
}

function hour(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) };
}

function refuses(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

describe('LeafBuilder', () => {
  let dir: string;
  let ca: TestCa;
  let p256: ParsedCsr;
  let p384: ParsedCsr;
  before(async () => {
    dir = tempDir('leaf-builder');
    ca = await makeCa('p256');
    p256 = parseCsr(await peculiarCsr((await generateKeyPair('p256')).keys, 'p256'), {});
    p384 = parseCsr(await peculiarCsr((await generateKeyPair('p384')).keys, 'p384'), {});
  });

  it('keeps one template per (issuer, SPIFFE ID, key type), in an LRU of bounded size', () => {
    const b = new LeafBuilder(2);
    const req = { spki: p256.spki, keyType: p256.keyType, ...hour() };
    b.build(issuerOf(ca), { ...req, spiffeId: `${ID}-a` });
    b.build(issuerOf(ca), { ...req, spiffeId: `${ID}-a` });
    assert.equal(b.cachedTemplates, 1);
    b.build(issuerOf(ca), { ...req, spiffeId: `${ID}-a`, spki: p384.spki, keyType: 'p384' });
    assert.equal(b.cachedTemplates, 2);
    for (const s of ['b', 'c', 'd']) b.build(issuerOf(ca), { ...req, spiffeId: `${ID}-${s}` });
    assert.equal(b.cachedTemplates, 2);
    // An evicted template is rebuilt, and the leaf is still right.
    const again = b.build(issuerOf(ca), { ...req, spiffeId: `${ID}-a` });
    assert.equal(new NodeX509(again.der).subjectAltName, `URI:${ID}-a`);
    assert.throws(() => new LeafBuilder(0), RangeError);
  });

  it('after rotation (new intermediate certificate and key) leaves chain to the new issuer; old and new interleave', async () => {
    const rotated = await makeCa('p256');
    const b = new LeafBuilder();
    for (let i = 0; i < 3; i++) {
      for (const c of [ca, rotated]) {
        const leaf = b.build(issuerOf(c), { spiffeId: ID, spki: p256.spki, keyType: 'p256', ...hour() });
        const cert = new x509.X509Certificate(leaf.der);
        assert.equal(cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, c.intermediate.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
        assert.match(opensslVerify(dir, c, toPem(leaf.der), `rotation-${i}`), /: OK/);
      }
    }
    assert.equal(b.cachedTemplates, 2);
  });

  it('accepts an issuer chain made by openssl (an independent producer of CA certificates)', () => {
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', 'ossl-root.key');
    run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'ossl-inter.key');
    run('req', '-x509', '-new', '-key', 'ossl-root.key', '-subj', '/C=XX/O=example.org/CN=OpenSSL Root', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ossl-root.pem');
    writeFileSync(join(dir, 'ossl-ext.cnf'), '[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    run('req', '-new', '-key', 'ossl-inter.key', '-subj', '/C=XX/O=example.org/CN=OpenSSL Intermediate', '-out', 'ossl-inter.csr');
    run('x509', '-req', '-in', 'ossl-inter.csr', '-CA', 'ossl-root.pem', '-CAkey', 'ossl-root.key', '-set_serial', '7', '-days', '20',
      '-extfile', 'ossl-ext.cnf', '-extensions', 'v3', '-out', 'ossl-inter.pem');
    const interPem = readFileSync(join(dir, 'ossl-inter.pem'), 'utf8');
    const interDer = new NodeX509(interPem).raw;
    const osslCa: TestCa = {
      rootPem: readFileSync(join(dir, 'ossl-root.pem'), 'utf8'), rootDer: new NodeX509(readFileSync(join(dir, 'ossl-root.pem'))).raw,
      intermediatePem: interPem, intermediateDer: interDer, issuerKey: createPrivateKey(readFileSync(join(dir, 'ossl-inter.key'))),
      intermediate: new x509.X509Certificate(interDer),
    };
    const leaf = new LeafBuilder().build(issuerOf(osslCa), { spiffeId: ID, spki: p384.spki, keyType: 'p384', ...hour() });
    assert.match(opensslVerify(dir, osslCa, toPem(leaf.der), 'ossl-leaf', ['-x509_strict']), /: OK/);
    assert.equal(new x509.X509Certificate(leaf.der).issuer, 'C=XX, O=example.org, CN=OpenSSL Intermediate');
  });

  it('clamps the validity into the issuer\'s and says so in the result', () => {
    const inter = ca.intermediate;
    const leaf = new LeafBuilder().build(issuerOf(ca), {
      spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(inter.notBefore.getTime() - DAY), notAfter: new Date(inter.notAfter.getTime() + DAY),
    });
    const cert = new x509.X509Certificate(leaf.der);
    assert.equal(cert.notBefore.getTime(), inter.notBefore.getTime());
    assert.equal(cert.notAfter.getTime(), inter.notAfter.getTime());
    assert.deepEqual([leaf.notBefore, leaf.notAfter], [cert.notBefore, cert.notAfter]);
  });

  it('refuses an empty validity (notBefore not before notAfter, or outside the issuer\'s)', () => {
    const b = new LeafBuilder();
    const now = Date.now();
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(now), notAfter: new Date(now) }), /empty validity/);
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(now + 1000 * DAY), notAfter: new Date(now + 1001 * DAY) }), /empty validity/);
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(NaN), notAfter: new Date(now) }), /valid dates/);
  });

  it('refuses validity reaching 2050 (the template holds UTCTime only)', async () => {
    const longCa = await makeCa('p256', 'example.org', 365 * 40);
    const b = new LeafBuilder();
    refuses(() => b.build(issuerOf(longCa), { spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(), notAfter: new Date(Date.UTC(2050, 0, 1)) }), /between 1950 and 2049/);
    const ok = b.build(issuerOf(longCa), { spiffeId: ID, spki: p256.spki, keyType: 'p256', notBefore: new Date(), notAfter: new Date(Date.UTC(2049, 11, 31, 23, 59, 59)) });
    assert.equal(new x509.X509Certificate(ok.der).notAfter.toISOString(), '2049-12-31T23:59:59.000Z');
  });

  it('uses a given serial, and refuses one that is not 20 bytes starting 0x40–0x7f', () => {
    const b = new LeafBuilder();
    const serial = Buffer.alloc(20, 0xab);
    serial[0] = 0x7f;
    const leaf = b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p256', serial, ...hour() });
    assert.deepEqual(leaf.serial, serial);
    assert.equal(new NodeX509(leaf.der).serialNumber.toLowerCase(), serial.toString('hex'));
    for (const bad of [Buffer.alloc(20, 0x80), Buffer.alloc(20, 0), Buffer.alloc(19, 0x40), Buffer.alloc(21, 0x40), Buffer.alloc(20, 0x3f)]) {
      refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p256', serial: bad, ...hour() }), /serial must be 20 bytes with the first byte in 0x40–0x7f/);
    }
  });

  it('refuses a public key that is not an uncompressed SPKI of the stated key type', () => {
    const b = new LeafBuilder();
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p256.spki, keyType: 'p384', ...hour() }), /not an uncompressed P-384 SubjectPublicKeyInfo/);
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: p384.spki, keyType: 'p256', ...hour() }), /not an uncompressed P-256 SubjectPublicKeyInfo/);
    refuses(() => b.build(issuerOf(ca), { spiffeId: ID, spki: Buffer.alloc(91), keyType: 'p256', ...hour() }), /not an uncompressed P-256/);
  });

  it('refuses a SPIFFE ID without a path (X509-SVID §3.1) or an invalid one', () => {
    const b = new LeafBuilder();
    const req = { spki: p256.spki, keyType: 'p256' as const, ...hour() };
    refuses(() => b.build(issuerOf(ca), { ...req, spiffeId: 'spiffe://example.org' }), /has no path: a workload \(leaf\) certificate needs one/);
    refuses(() => b.build(issuerOf(ca), { ...req, spiffeId: 'spiffe://example.org/web/' }), /trailing slash/);
    refuses(() => b.build(issuerOf(ca), { ...req, spiffeId: 'https://example.org/web' }), /scheme/);
  });

  it('refuses an issuer key that is not the issuer certificate\'s key, and an issuer that is not a CA', async () => {
    const b = new LeafBuilder();
    const req = { spiffeId: ID, spki: p256.spki, keyType: 'p256' as const, ...hour() };
    const stranger = (await generateKeyPair('p256')).privateKey;
    assert.throws(() => b.build({ certDer: ca.intermediateDer, key: stranger }, req), /the issuer key is not the private key of the issuer certificate/);
    const leafKey = await generateKeyPair('p256');
    const leafCsr = parseCsr(await peculiarCsr(leafKey.keys, 'p256'), {});
    const leaf = b.build(issuerOf(ca), { ...req, spki: leafCsr.spki });
    assert.throws(() => b.build({ certDer: leaf.der, key: leafKey.privateKey }, req), /not a CA/);
    // The right key still works after a wrong one was refused.
    assert.ok(b.build(issuerOf(ca), req).der.length > 0);
  });

  it('SPIFFE IDs that look like the template\'s placeholders (times, hex) do not confuse it', () => {
    const b = new LeafBuilder();
    for (const path of ['/491231235959Z/500101000000Z', `/${'0'.repeat(40)}`, '/04/14', `/${'a'.repeat(200)}`]) {
      const leaf = b.build(issuerOf(ca), { spiffeId: `spiffe://example.org${path}`, spki: p256.spki, keyType: 'p256', ...hour() });
      assert.equal(new NodeX509(leaf.der).subjectAltName, `URI:spiffe://example.org${path}`);
      assert.match(opensslVerify(dir, ca, toPem(leaf.der), 'lookalike'), /: OK/);
    }
  });

  it('formatSerial prints lowercase colon-separated hex, as Vault does', () => {
    assert.equal(formatSerial(Buffer.from('3a0fff0001', 'hex')), '3a:0f:ff:00:01');
    assert.equal(formatSerial(Buffer.from('7f', 'hex')), '7f');
    assert.equal(formatSerial(Buffer.alloc(0)), '');
  });
});

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, webcrypto } from 'node:crypto';
import { BadRequestError } from '../../src/core/errors.js';
import { MAX_CSR_BYTES, parseCsr } from '../../src/identity/csr.js';
import { tempDir } from '../helpers/temp.js';
import { generateKeyPair, opensslCsr, OPENSSL_EC, peculiarCsr, uriSan, x509, type KeyPair } from './pki-fixtures.js';

const ID = 'spiffe://example.org/ns/default/svc/web';

function der(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}

function pem(d: Buffer): string {
  return `-----BEGIN CERTIFICATE REQUEST-----\n${d.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

function refuses(input: string | Buffer, message: RegExp, expectedSpiffeId: string | null = ID): void {
  assert.throws(() => parseCsr(input, { expectedSpiffeId: expectedSpiffeId ?? undefined }), (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.equal(err.status, 400);
    assert.match(err.message, message);
    return true;
  });
}

/** The SPKI DER of a webcrypto public key. */
async function spkiOf(keys: KeyPair): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.exportKey('spki', keys.keys.publicKey));
}

describe('parseCsr accepts well-formed EC CSRs', () => {
  let dir: string;
  let p256: KeyPair;
  let p384: KeyPair;
  before(async () => {
    dir = tempDir('csr');
    p256 = await generateKeyPair('p256');
    p384 = await generateKeyPair('p384');
  });

  it('a P-256 CSR made by @peculiar/x509 with the expected URI SAN: key type, SPKI and key are the CSR\'s', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [uriSan(ID)] });
    const parsed = parseCsr(csr, { expectedSpiffeId: ID });
    assert.equal(parsed.keyType, 'p256');
    assert.deepEqual(parsed.spki, await spkiOf(p256));
    assert.deepEqual(parsed.publicKey.export({ type: 'spki', format: 'der' }), await spkiOf(p256));
  });

  it('a P-384 CSR signed with ecdsa-with-SHA384', async () => {
    const parsed = parseCsr(await peculiarCsr(p384.keys, 'p384', { extensions: [uriSan(ID)] }), { expectedSpiffeId: ID });
    assert.equal(parsed.keyType, 'p384');
    assert.deepEqual(parsed.spki, await spkiOf(p384));
  });

  it('a P-256 key signing with SHA-384 (either hash with either curve)', async () => {
    const csr = await peculiarCsr(p256.keys, null, { signingAlgorithm: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams });
    assert.equal(parseCsr(csr, {}).keyType, 'p256');
  });

  it('the same CSR as DER bytes', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [uriSan(ID)] });
    assert.deepEqual(parseCsr(der(csr), { expectedSpiffeId: ID }).spki, await spkiOf(p256));
  });

  it('CSRs made by `openssl req` (P-256 and P-384), with and without a URI SAN; the subject is ignored', () => {
    for (const curve of ['p256', 'p384'] as const) {
      const plain = opensslCsr(dir, `plain-${curve}`, OPENSSL_EC[curve]);
      const parsed = parseCsr(plain.csr, { expectedSpiffeId: ID });
      assert.equal(parsed.keyType, curve);
      assert.deepEqual(parsed.spki, createPublicKey(plain.key).export({ type: 'spki', format: 'der' }));
      const withSan = opensslCsr(dir, `san-${curve}`, OPENSSL_EC[curve], ['-subj', '/CN=anything/O=whatever', '-addext', `subjectAltName=URI:${ID}`]);
      assert.equal(parseCsr(withSan.csr, { expectedSpiffeId: ID }).keyType, curve);
    }
  });

  it('PEM with explanatory text around the block (as `openssl req -text` prints)', () => {
    const made = opensslCsr(dir, 'text', OPENSSL_EC.p256);
    const withText = `Certificate Request:\n    Data: whatever openssl printed\n${made.csr}trailing words\n`;
    assert.equal(parseCsr(withText, {}).keyType, 'p256');
  });

  it('extensions that do not change the leaf are ignored (keyUsage, extKeyUsage, CA:false)', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', {
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
        new x509.ExtendedKeyUsageExtension(['1.3.6.1.5.5.7.3.3']),
        uriSan(ID),
      ],
    });
    assert.equal(parseCsr(csr, { expectedSpiffeId: ID }).keyType, 'p256');
  });

  it('a CSR without a SAN when an ID is expected: the server decides the identity, not the CSR', async () => {
    assert.equal(parseCsr(await peculiarCsr(p256.keys, 'p256'), { expectedSpiffeId: ID }).keyType, 'p256');
  });
});

describe('parseCsr refuses bad CSRs, each with a precise BadRequestError', () => {
  let dir: string;
  let p256: KeyPair;
  let good: string;
  before(async () => {
    dir = tempDir('csr-bad');
    p256 = await generateKeyPair('p256');
    good = await peculiarCsr(p256.keys, 'p256', { name: 'CN=workload', extensions: [uriSan(ID)] });
  });

  it(`refuses a CSR larger than ${MAX_CSR_BYTES / 1024} KiB (PEM or DER)`, () => {
    refuses('x'.repeat(MAX_CSR_BYTES) + good, /CSR is larger than 16 KiB/);
    refuses(Buffer.concat([der(good), Buffer.alloc(MAX_CSR_BYTES)]), /CSR is larger than 16 KiB/);
  });

  it('refuses garbage: not PEM, bad base64, not DER, not a CertificationRequest', () => {
    refuses('hello world', /CSR is not PEM/);
    refuses('', /CSR is not PEM/);
    refuses('-----BEGIN CERTIFICATE REQUEST-----\n!!!not base64!!!\n-----END CERTIFICATE REQUEST-----\n', /not valid base64/);
    refuses(pem(Buffer.from('not der at all, just text')), /CSR is not DER/);
    refuses(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]), /not a valid PKCS#10 certification request/);
    refuses(Buffer.from([0x02, 0x01, 0x00]), /CSR is not DER: it does not start with a SEQUENCE/);
    refuses(Buffer.alloc(0), /CSR is empty/);
    refuses('-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n', /no "-----END CERTIFICATE REQUEST-----" line/);
  });

  it('refuses a PEM with two blocks, even two CSRs', () => {
    refuses(good + good, /exactly one block; found 2/);
    refuses(good + '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', /exactly one block; found 2/);
  });

  it('refuses a PEM block with another label', () => {
    refuses(good.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'), /labelled "CERTIFICATE"; expected "CERTIFICATE REQUEST"/);
  });

  it('refuses trailing bytes after the DER element, and a truncated one', () => {
    refuses(Buffer.concat([der(good), Buffer.from([0])]), /trailing bytes/);
    refuses(pem(Buffer.concat([der(good), Buffer.from('junk')])), /trailing bytes/);
    refuses(der(good).subarray(0, der(good).length - 1), /truncated/);
  });

  it('refuses PEM text passed as a buffer', () => {
    refuses(Buffer.from(good), /buffer holds PEM text/);
  });

  it('refuses a CSR whose signed content was altered (one byte of the subject flipped)', () => {
    const d = Buffer.from(der(good));
    const at = d.indexOf(Buffer.from('workload'));
    assert.ok(at > 0);
    d[at] ^= 0x01;
    refuses(d, /CSR signature does not verify/);
  });

  it('refuses a CSR whose signature was altered (its last byte flipped)', () => {
    const d = Buffer.from(der(good));
    d[d.length - 1] ^= 0x01;
    refuses(d, /CSR signature does not verify/);
  });

  it('refuses RSA keys ("unsupported key type"), from openssl and from @peculiar/x509', async () => {
    refuses(opensslCsr(dir, 'rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']).csr, /unsupported key type RSA: only EC P-256 and P-384 keys are accepted/);
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
    const rsa = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    refuses(await peculiarCsr(rsa, null, { signingAlgorithm: alg }), /unsupported key type RSA/);
  });

  it('refuses Ed25519 and Ed448 keys ("unsupported key type")', () => {
    refuses(opensslCsr(dir, 'ed25519', ['-algorithm', 'ED25519']).csr, /unsupported key type Ed25519: only EC P-256 and P-384 keys are accepted/);
    refuses(opensslCsr(dir, 'ed448', ['-algorithm', 'ED448']).csr, /unsupported key type Ed448/);
  });

  it('refuses EC keys on other curves (P-521, secp256k1)', () => {
    refuses(opensslCsr(dir, 'p521', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521']).csr, /unsupported key type EC P-521: only EC P-256 and P-384/);
    refuses(opensslCsr(dir, 'k1', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1']).csr, /unsupported key type EC secp256k1/);
  });

  it('refuses a signature algorithm other than ecdsa-with-SHA256/384 (SHA-512)', async () => {
    const csr = await peculiarCsr(p256.keys, null, { signingAlgorithm: { name: 'ECDSA', hash: 'SHA-512' } as webcrypto.EcdsaParams });
    refuses(csr, /unsupported CSR signature algorithm 1\.2\.840\.10045\.4\.3\.4: only ecdsa-with-SHA256 and ecdsa-with-SHA384/);
  });

  it('refuses a compressed EC point', () => {
    const made = opensslCsr(dir, 'compressed', OPENSSL_EC.p256, [], { compressedPoint: true });
    refuses(made.csr, /CSR public key is a compressed P-256 point; send the uncompressed form/);
  });

  it('refuses a point that is not on the curve (createPublicKey refuses it; mapped to BadRequestError)', async () => {
    const d = Buffer.from(der(good));
    const point = (await spkiOf(p256)).subarray(-65);
    const at = d.indexOf(point);
    assert.ok(at > 0);
    d[at + 64] ^= 0x01; // last byte of Y
    refuses(d, /CSR public key is not a valid point on P-256/);
  });

  it('refuses a CSR that asks for CA:true', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [new x509.BasicConstraintsExtension(true, undefined, true), uriSan(ID)] });
    refuses(csr, /^CSR asks for CA:true; a workload certificate cannot be a CA$/);
    const fromOpenssl = opensslCsr(dir, 'ca', OPENSSL_EC.p256, ['-addext', 'basicConstraints=critical,CA:TRUE']);
    refuses(fromOpenssl.csr, /CSR asks for CA:true/);
  });

  it('refuses a DNS, IP or email SAN (X509-SVID: the SPIFFE ID is the identity)', async () => {
    const dns = await peculiarCsr(p256.keys, 'p256', { extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }, { type: 'dns', value: 'web.example.org' }])] });
    refuses(dns, /CSR asks for a DNS name SAN \("web\.example\.org"\); a workload certificate carries only its SPIFFE ID as a URI SAN/);
    const ip = opensslCsr(dir, 'ip', OPENSSL_EC.p256, ['-addext', 'subjectAltName=IP:10.0.0.1']);
    refuses(ip.csr, /CSR asks for an IP address SAN \(10\.0\.0\.1\)/);
    const email = opensslCsr(dir, 'email', OPENSSL_EC.p256, ['-addext', 'subjectAltName=email:a@example.org']);
    refuses(email.csr, /CSR asks for an email SAN \("a@example\.org"\)/);
  });

  it('refuses a URI SAN other than the expected SPIFFE ID', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [uriSan('spiffe://example.org/ns/default/svc/admin')] });
    refuses(csr, /CSR asks for URI SAN "spiffe:\/\/example\.org\/ns\/default\/svc\/admin", but this workload's SPIFFE ID is "spiffe:\/\/example\.org\/ns\/default\/svc\/web"/);
  });

  it('refuses two URI SANs, even if one is the expected ID', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [uriSan(ID, 'spiffe://example.org/ns/default/svc/admin')] });
    refuses(csr, /CSR asks for 2 URI SANs; an X509-SVID carries exactly one, the SPIFFE ID/);
  });

  it('refuses a URI SAN when no SPIFFE ID was expected', () => {
    refuses(good, /CSR asks for URI SAN "spiffe:\/\/example\.org\/ns\/default\/svc\/web", but no SPIFFE ID was expected/, null);
  });

  it('refuses the same extension requested twice', async () => {
    const csr = await peculiarCsr(p256.keys, 'p256', { extensions: [uriSan(ID), uriSan(ID)] });
    refuses(csr, /CSR asks for extension 2\.5\.29\.17 more than once/);
  });

  it('every refusal is a BadRequestError, never a crash: each byte of a CSR corrupted three ways', () => {
    const base = der(good);
    const accepted: string[] = [];
    for (let at = 0; at < base.length; at++) {
      for (const flip of [0x01, 0x80, 0xff]) {
        const d = Buffer.from(base);
        d[at] ^= flip;
        try {
          parseCsr(d, { expectedSpiffeId: ID });
          accepted.push(`byte ${at} ^ 0x${flip.toString(16)}`);
        } catch (err) {
          assert.ok(err instanceof BadRequestError, `byte ${at} ^ 0x${flip.toString(16)} threw ${String(err)}`);
        }
      }
    }
    // Outside the signed part, only canonical DER passes (the decoder alone would take a re-tagged
    // signatureAlgorithm or non-zero unused bits in the signature BIT STRING).
    assert.deepEqual(accepted, []);
  });

  it('refuses ECDSA signature algorithm parameters (RFC 5758: MUST be absent) and non-zero unused bits', () => {
    const d = der(good);
    const alg = Buffer.from('300a06082a8648ce3d040302', 'hex');
    const at = d.lastIndexOf(alg);
    const withNull = Buffer.concat([d.subarray(0, at), Buffer.from('300c06082a8648ce3d0403020500', 'hex'), d.subarray(at + alg.length)]);
    // Fix the outer length (short or 2-byte form) for the 2 added bytes.
    const fixed = Buffer.from(withNull);
    if (fixed[1] === 0x82) fixed.writeUInt16BE(fixed.readUInt16BE(2) + 2, 2);
    else fixed[fixed[1] === 0x81 ? 2 : 1] += 2;
    refuses(fixed, /not canonically encoded \(ECDSA parameters must be absent\)/);
  });
});


import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, X509Certificate as NodeX509 } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { AsnConvert, AsnParser } from '@peculiar/asn1-schema';
import { Certificate, Name } from '@peculiar/asn1-x509';
import { parseCsr } from '../../src/identity/csr.js';
import { LeafBuilder } from '../../src/identity/leaf-builder.js';
import { parseSpiffeId } from '../../src/identity/spiffe-id.js';
import { tempDir } from '../helpers/temp.js';
import {
  generateKeyPair, makeCa, opensslCsr, OPENSSL_EC, opensslVerify, peculiarCsr, toPem, uriSan, x509, type Curve, type TestCa,
} from './pki-fixtures.js';

// Conformance of LeafBuilder's leaves with the X509-SVID standard (spiffe/spiffe standards/X509-SVID.md), checked
// one MUST at a time on leaves for every (issuer curve, subject curve) pair and for CSRs from two producers
// (@peculiar/x509 and `openssl req`), plus the RFC 5280 rules the leaf profile relies on.

const OID = {
  san: '2.5.29.17', basicConstraints: '2.5.29.19', keyUsage: '2.5.29.15', extKeyUsage: '2.5.29.37',
  aki: '2.5.29.35', ski: '2.5.29.14', serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaSha256: '1.2.840.10045.4.3.2', ecdsaSha384: '1.2.840.10045.4.3.3',
};

interface Leaf {
  label: string;
  spiffeId: string;
  issuerCurve: Curve;
  subjectCurve: Curve;
  ca: TestCa;
  der: Buffer;
  pem: string;
  serial: Buffer;
  /** The workload's private key (PEM). */
  keyPem: string;
  spki: Buffer;
  requested: { notBefore: Date; notAfter: Date };
  peculiar: x509.X509Certificate;
  node: NodeX509;
}

const CURVES: Curve[] = ['p256', 'p384'];
const builder = new LeafBuilder();
const cas = {} as Record<Curve, TestCa>;
const leaves: Leaf[] = [];
let dir: string;

async function issue(ca: TestCa, issuerCurve: Curve, subjectCurve: Curve, producer: 'peculiar' | 'openssl', spiffeId: string): Promise<Leaf> {
  let csr: string;
  let keyPem: string;
  if (producer === 'peculiar') {
    const k = await generateKeyPair(subjectCurve);
    csr = await peculiarCsr(k.keys, subjectCurve, { extensions: [uriSan(spiffeId)] });
    keyPem = k.privatePem;
  } else {
    const made = opensslCsr(dir, `${issuerCurve}-${subjectCurve}-${leaves.length}`, OPENSSL_EC[subjectCurve], ['-addext', `subjectAltName=URI:${spiffeId}`]);
    csr = made.csr;
    keyPem = made.key;
  }
  const parsed = parseCsr(csr, { expectedSpiffeId: spiffeId });
  const now = Date.now();
  const requested = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000) };
  const built = builder.build({ certDer: ca.intermediateDer, key: ca.issuerKey }, { spiffeId, spki: parsed.spki, keyType: parsed.keyType, ...requested });
  return {
    label: `${issuerCurve} issuer, ${subjectCurve} key, CSR by ${producer}`,
    spiffeId, issuerCurve, subjectCurve, ca, der: built.der, pem: toPem(built.der), serial: built.serial, keyPem, spki: parsed.spki, requested,
    peculiar: new x509.X509Certificate(built.der), node: new NodeX509(built.der),
  };
}

function ext<T extends x509.Extension>(leaf: Leaf, type: new (raw: ArrayBuffer) => T): T {
  const e = leaf.peculiar.getExtension(type);
  assert.ok(e, `${leaf.label}: extension ${type.name} is missing`);
  return e;
}

function rawExtensions(leaf: Leaf) {
  return AsnParser.parse(leaf.der, Certificate).tbsCertificate.extensions ?? [];
}

before(async () => {
  dir = tempDir('x509-svid');
  for (const c of CURVES) cas[c] = await makeCa(c);
  for (const issuerCurve of CURVES) {
    for (const subjectCurve of CURVES) {
      for (const producer of ['peculiar', 'openssl'] as const) {
        leaves.push(await issue(cas[issuerCurve], issuerCurve, subjectCurve, producer, `spiffe://example.org/ns/default/svc/${producer}-${subjectCurve}`));
      }
    }
  }
  // Trust domain and service name longer than X.520's 64-character bound: the subject is empty (see below).
  const longTd = `${'t'.repeat(60)}.example.org`;
  leaves.push(await issue(cas.p256, 'p256', 'p256', 'peculiar', `spiffe://${longTd}/ns/default/svc/${'s'.repeat(63)}-x`));
});

describe('every leaf parses', () => {
  it('with @peculiar/x509 X509Certificate and with node:crypto X509Certificate, the same certificate', () => {
    assert.equal(leaves.length, 9);
    for (const leaf of leaves) {
      assert.deepEqual(Buffer.from(leaf.peculiar.rawData), leaf.der, leaf.label);
      assert.deepEqual(leaf.node.raw, leaf.der, leaf.label);
      assert.equal(leaf.node.subjectAltName, `URI:${leaf.spiffeId}`, leaf.label);
      assert.equal(leaf.node.serialNumber.toLowerCase(), leaf.serial.toString('hex'), leaf.label);
    }
  });

  it('is DER that re-encodes to itself (@peculiar/asn1-x509)', () => {
    for (const leaf of leaves) {
      const parsed = AsnParser.parse(leaf.der, Certificate);
      assert.deepEqual(Buffer.from(AsnConvert.serialize(parsed)), leaf.der, leaf.label);
    }
  });
});

describe('X509-SVID §2 SPIFFE ID', () => {
  it('"An X.509 SVID MUST contain exactly one URI SAN, and by extension, exactly one SPIFFE ID" — the requested one', () => {
    for (const leaf of leaves) {
      const names = ext(leaf, x509.SubjectAlternativeNameExtension).names.items;
      const uris = names.filter((n) => n.type === 'url');
      assert.equal(uris.length, 1, leaf.label);
      assert.equal(uris[0]!.value, leaf.spiffeId, leaf.label);
      assert.equal(names.length, 1, `${leaf.label}: no other SAN types either`);
    }
  });

  it('the SPIFFE ID is valid per the SPIFFE-ID standard and its scheme is "spiffe" (§5.2)', () => {
    for (const leaf of leaves) {
      const uri = ext(leaf, x509.SubjectAlternativeNameExtension).names.items[0]!.value;
      assert.ok(uri.startsWith('spiffe://'), leaf.label);
      assert.equal(parseSpiffeId(uri).uri, leaf.spiffeId);
    }
  });
});

describe('X509-SVID §3.1 Leaf Certificates', () => {
  it('"Leaf certificate SPIFFE IDs MUST have a non-root path component"', () => {
    for (const leaf of leaves) assert.notEqual(parseSpiffeId(leaf.spiffeId).path, '', leaf.label);
  });

  it('"the URI SAN extension MUST be marked as critical if Subject is omitted"', () => {
    for (const leaf of leaves) {
      const san = ext(leaf, x509.SubjectAlternativeNameExtension);
      const subjectEmpty = leaf.peculiar.subjectName.toJSON().length === 0;
      if (subjectEmpty) assert.equal(san.critical, true, leaf.label);
      // With a subject, the SAN is not critical (RFC 5280 §4.2.1.6: SHOULD NOT be critical then).
      else assert.equal(san.critical, false, leaf.label);
    }
    const empty = leaves.filter((l) => l.peculiar.subjectName.toJSON().length === 0);
    assert.equal(empty.length, 1, 'the long-name leaf has an empty subject');
    assert.ok(!empty[0]!.node.subject, 'node sees no subject');
  });

  it('the subject, when present, is O=<trust domain>, CN=<last path segment>: informative only', () => {
    for (const leaf of leaves.filter((l) => l.peculiar.subject !== '')) {
      const id = parseSpiffeId(leaf.spiffeId);
      assert.equal(leaf.peculiar.subject, `O=${id.trustDomain}, CN=${id.path.split('/').pop()}`, leaf.label);
    }
  });
});

describe('X509-SVID §4 Constraints and Usage', () => {
  it('§4.1 "leaf certificates MUST set the cA field to false" (basicConstraints present and critical, no pathLen)', () => {
    for (const leaf of leaves) {
      const bc = ext(leaf, x509.BasicConstraintsExtension);
      assert.equal(bc.ca, false, leaf.label);
      assert.equal(bc.pathLength, undefined, leaf.label);
      assert.equal(bc.critical, true, leaf.label);
      assert.equal(leaf.node.ca, false, leaf.label);
    }
  });

  it('§4.3 "The key usage extension MUST be set on all SVIDs, and MUST be marked critical"', () => {
    for (const leaf of leaves) assert.equal(ext(leaf, x509.KeyUsagesExtension).critical, true, leaf.label);
  });

  it('§4.3 "Leaf SVIDs MUST set digitalSignature" and "MUST NOT set keyCertSign or cRLSign" (digitalSignature only)', () => {
    for (const leaf of leaves) {
      const usages = ext(leaf, x509.KeyUsagesExtension).usages;
      assert.ok(usages & x509.KeyUsageFlags.digitalSignature, leaf.label);
      assert.equal(usages & x509.KeyUsageFlags.keyCertSign, 0, leaf.label);
      assert.equal(usages & x509.KeyUsageFlags.cRLSign, 0, leaf.label);
      assert.equal(usages, x509.KeyUsageFlags.digitalSignature, leaf.label);
    }
  });

  it('§4.4 "When included, fields id-kp-serverAuth and id-kp-clientAuth MUST be set"', () => {
    for (const leaf of leaves) {
      const eku = ext(leaf, x509.ExtendedKeyUsageExtension);
      assert.deepEqual([...eku.usages].sort(), [OID.serverAuth, OID.clientAuth].sort(), leaf.label);
      assert.deepEqual(leaf.node.keyUsage.sort(), [OID.serverAuth, OID.clientAuth].sort(), leaf.label);
    }
  });

  it('carries exactly the profile\'s six extensions, each once', () => {
    for (const leaf of leaves) {
      const ids = rawExtensions(leaf).map((e) => e.extnID);
      assert.deepEqual([...ids].sort(), [OID.san, OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.aki, OID.ski].sort(), leaf.label);
    }
  });
});

describe('X509-SVID §5 Validation', () => {
  it('§5.1 "MUST follow RFC 5280 path validation": `openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem` passes, also -x509_strict', () => {
    for (const [i, leaf] of leaves.entries()) {
      assert.match(opensslVerify(dir, leaf.ca, leaf.pem, `leaf${i}`), /: OK/, leaf.label);
      assert.match(opensslVerify(dir, leaf.ca, leaf.pem, `leaf${i}`, ['-x509_strict', '-purpose', 'sslserver']), /: OK/, leaf.label);
      assert.match(opensslVerify(dir, leaf.ca, leaf.pem, `leaf${i}`, ['-x509_strict', '-purpose', 'sslclient']), /: OK/, leaf.label);
    }
  });

  it('§5.1: the chain does not verify against a different root', () => {
    const other = { ...cas.p384, intermediatePem: cas.p256.intermediatePem };
    const leaf = leaves.find((l) => l.issuerCurve === 'p256')!;
    assert.throws(() => opensslVerify(dir, other, leaf.pem, 'foreign'), /openssl verify failed/);
  });

  it('§5.2 a SPIFFE validator accepts it: CA false, no keyCertSign/cRLSign, spiffe scheme, non-root path, one URI SAN', () => {
    for (const leaf of leaves) {
      const id = validateX509Svid(leaf.peculiar);
      assert.equal(id, leaf.spiffeId, leaf.label);
    }
  });
});

describe('SPIFFE-ID §3.2 and RFC 5280 fields the profile relies on', () => {
  it('SPIFFE-ID §3.2 "The SPIFFE ID and the public key (if present) MUST be included in a portion of the payload which is signed"', () => {
    for (const leaf of leaves) {
      const parsed = AsnParser.parse(leaf.der, Certificate);
      const tbs = Buffer.from(parsed.tbsCertificateRaw!);
      assert.ok(tbs.includes(Buffer.from(leaf.spiffeId)), leaf.label);
      assert.ok(tbs.includes(leaf.spki.subarray(-(leaf.subjectCurve === 'p256' ? 65 : 97))), leaf.label);
      assert.ok(leaf.node.verify(new NodeX509(leaf.ca.intermediateDer).publicKey), `${leaf.label}: signature verifies with the issuer key`);
    }
  });

  it('the certified key is the CSR\'s key: the workload\'s private key matches the leaf', () => {
    for (const leaf of leaves) {
      assert.equal(leaf.node.checkPrivateKey(createPrivateKey(leaf.keyPem)), true, leaf.label);
      assert.deepEqual(Buffer.from(leaf.peculiar.publicKey.rawData), leaf.spki, leaf.label);
    }
  });

  it('RFC 5280 §4.1.2.1: version is v3', () => {
    for (const leaf of leaves) assert.equal(AsnParser.parse(leaf.der, Certificate).tbsCertificate.version, 2, leaf.label);
  });

  it('RFC 5280 §4.1.2.2: the serial is a positive INTEGER of 20 octets at most, with no leading zero', () => {
    for (const leaf of leaves) {
      const raw = Buffer.from(AsnParser.parse(leaf.der, Certificate).tbsCertificate.serialNumber);
      assert.equal(raw.length, 20, leaf.label);
      assert.ok(raw[0]! >= 0x40 && raw[0]! <= 0x7f, `${leaf.label}: positive, no leading zero`);
      assert.deepEqual(raw, leaf.serial);
    }
  });

  it('serials are random (≥ 128 random bits): 3,000 leaves, all distinct, every one of the 158 random bits takes both values', () => {
    const leaf = leaves[0]!;
    const seen = new Set<string>();
    const ones = new Array<number>(160).fill(0);
    const n = 3000;
    for (let i = 0; i < n; i++) {
      const built = builder.build({ certDer: leaf.ca.intermediateDer, key: leaf.ca.issuerKey }, { spiffeId: leaf.spiffeId, spki: leaf.spki, keyType: leaf.subjectCurve, ...leaf.requested });
      seen.add(built.serial.toString('hex'));
      for (let bit = 0; bit < 160; bit++) if (built.serial[bit >> 3]! & (0x80 >> (bit & 7))) ones[bit]!++;
    }
    assert.equal(seen.size, n);
    assert.equal(ones[0], 0, 'top bit clear: positive');
    assert.equal(ones[1], n, 'second bit set: no leading zero octet');
    for (let bit = 2; bit < 160; bit++) assert.ok(ones[bit]! > n * 0.4 && ones[bit]! < n * 0.6, `bit ${bit} looks random (${ones[bit]}/${n})`);
  });

  it('RFC 5280 §4.1.2.4: the issuer is the issuing certificate\'s subject, byte for byte', () => {
    for (const leaf of leaves) {
      const inter = AsnParser.parse(leaf.ca.intermediateDer, Certificate);
      const subjectDer = Buffer.from(AsnConvert.serialize(inter.tbsCertificate.subject));
      assert.ok(Buffer.from(inter.tbsCertificateRaw!).includes(subjectDer), 'the re-encoded subject is the original bytes');
      const issuerDer = Buffer.from(AsnConvert.serialize(AsnParser.parse(leaf.der, Certificate).tbsCertificate.issuer));
      assert.deepEqual(issuerDer, subjectDer, leaf.label);
      assert.ok(leaf.der.includes(subjectDer), leaf.label);
      assert.equal(leaf.node.checkIssued(new NodeX509(leaf.ca.intermediateDer)), true, leaf.label);
      assert.equal(leaf.peculiar.issuer, leaf.ca.intermediate.subject, leaf.label);
    }
  });

  it('RFC 5280 §4.1.2.5: validity is the requested one (whole seconds), as UTCTime, inside the issuer\'s', () => {
    for (const leaf of leaves) {
      const v = AsnParser.parse(leaf.der, Certificate).tbsCertificate.validity;
      assert.ok(v.notBefore.utcTime && v.notAfter.utcTime, `${leaf.label}: UTCTime`);
      assert.equal(leaf.peculiar.notBefore.getTime(), Math.ceil(leaf.requested.notBefore.getTime() / 1000) * 1000, leaf.label);
      assert.equal(leaf.peculiar.notAfter.getTime(), Math.floor(leaf.requested.notAfter.getTime() / 1000) * 1000, leaf.label);
      assert.ok(leaf.peculiar.notBefore >= leaf.ca.intermediate.notBefore, leaf.label);
      assert.ok(leaf.peculiar.notAfter <= leaf.ca.intermediate.notAfter, leaf.label);
    }
  });

  it('RFC 5280 §4.2.1.1: the authorityKeyIdentifier is the issuer\'s subjectKeyIdentifier', () => {
    for (const leaf of leaves) {
      const aki = ext(leaf, x509.AuthorityKeyIdentifierExtension);
      const issuerSki = leaf.ca.intermediate.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
      assert.equal(aki.keyId, issuerSki, leaf.label);
      assert.equal(aki.critical, false);
    }
  });

  it('RFC 5280 §4.2.1.2 (1): the subjectKeyIdentifier is the SHA-1 of the subjectPublicKey bits', () => {
    for (const leaf of leaves) {
      const point = leaf.spki.subarray(-(leaf.subjectCurve === 'p256' ? 65 : 97));
      assert.equal(ext(leaf, x509.SubjectKeyIdentifierExtension).keyId, createHash('sha1').update(point).digest('hex'), leaf.label);
    }
  });

  it('RFC 5280 §4.1.1.2: signatureAlgorithm equals the TBS signature field and follows the issuer key (P-256 → SHA-256, P-384 → SHA-384)', () => {
    for (const leaf of leaves) {
      const parsed = AsnParser.parse(leaf.der, Certificate);
      const want = leaf.issuerCurve === 'p256' ? OID.ecdsaSha256 : OID.ecdsaSha384;
      assert.equal(parsed.signatureAlgorithm.algorithm, want, leaf.label);
      assert.equal(parsed.tbsCertificate.signature.algorithm, want, leaf.label);
      assert.equal(parsed.signatureAlgorithm.parameters, undefined, `${leaf.label}: RFC 5758: parameters absent`);
    }
  });

  it('the subject names use UTF8String (RFC 5280 §4.1.2.6: new certificates use PrintableString or UTF8String)', () => {
    for (const leaf of leaves) {
      const subject: Name = AsnParser.parse(leaf.der, Certificate).tbsCertificate.subject;
      for (const rdn of subject) for (const atv of rdn) assert.ok(atv.value.utf8String !== undefined, leaf.label);
    }
  });
});

describe('a leaf\'s private key works: TLS 1.3 mutual authentication between two leaves on 127.0.0.1', () => {
  it('server and client each verify the other\'s chain and check the peer\'s SPIFFE ID (URI SAN)', async () => {
    const serverLeaf = leaves.find((l) => l.issuerCurve === 'p256' && l.subjectCurve === 'p256')!;
    const clientLeaf = leaves.find((l) => l.issuerCurve === 'p256' && l.subjectCurve === 'p384')!;
    const ca = serverLeaf.ca;
    const server = tls.createServer({
      key: serverLeaf.keyPem, cert: serverLeaf.pem + ca.intermediatePem, ca: ca.rootPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3',
    }, (socket) => {
      socket.end(`hello ${socket.getPeerCertificate().subjectaltname}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      const connect = (expectedServerId: string) => new Promise<{ data: string; authorized: boolean }>((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1', port, key: clientLeaf.keyPem, cert: clientLeaf.pem + ca.intermediatePem, ca: ca.rootPem, minVersion: 'TLSv1.3',
          // Node's default rejects a certificate whose only SAN is a URI; a SPIFFE client compares the URI SAN instead.
          checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${expectedServerId}` ? undefined : new Error(`server is ${cert.subjectaltname}, not ${expectedServerId}`)),
        });
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (data += d));
        socket.on('end', () => resolve({ data, authorized: socket.authorized }));
        socket.on('error', reject);
      });
      // The server answers only a client whose chain it verified (requestCert + rejectUnauthorized), naming its ID.
      assert.deepEqual(await connect(serverLeaf.spiffeId), { data: `hello URI:${clientLeaf.spiffeId}`, authorized: true });
      await assert.rejects(connect('spiffe://example.org/ns/default/svc/someone-else'), /server is URI:spiffe:\/\/example\.org\/ns\/default\/svc\/peculiar-p256, not spiffe:\/\/example\.org\/ns\/default\/svc\/someone-else/);
    } finally {
      server.close();
    }
  });
});

/** X509-SVID §5.2 leaf validation, as a relying party would do it. Returns the SPIFFE ID. */
function validateX509Svid(cert: x509.X509Certificate): string {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc || bc.ca) throw new Error('not a leaf: CA is not false');
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!ku || ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)) throw new Error('keyCertSign or cRLSign set');
  const uris = (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []).filter((n) => n.type === 'url');
  if (uris.length !== 1) throw new Error('not exactly one URI SAN');
  const id = parseSpiffeId(uris[0]!.value);
  if (id.path === '') throw new Error('root SPIFFE ID on a leaf');
  return id.uri;
}

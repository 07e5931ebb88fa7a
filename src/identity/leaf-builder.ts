import { createHash, randomFillSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { AsnConvert, AsnParser, OctetString } from '@peculiar/asn1-schema';
import { id_ecdsaWithSHA256, id_ecdsaWithSHA384 } from '@peculiar/asn1-ecc';
import {
  AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, AuthorityKeyIdentifier, BasicConstraints, Certificate, ExtendedKeyUsage,
  Extension, Extensions, GeneralName, KeyIdentifier, KeyUsage, KeyUsageFlags, Name, RelativeDistinguishedName, SubjectAlternativeName,
  SubjectKeyIdentifier, SubjectPublicKeyInfo, TBSCertificate, Validity, Version, id_ce_authorityKeyIdentifier, id_ce_basicConstraints,
  id_ce_extKeyUsage, id_ce_keyUsage, id_ce_subjectAltName, id_ce_subjectKeyIdentifier, id_kp_clientAuth, id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import { BadRequestError } from '../core/errors.js';
import { spkiPrefix, type LeafKeyType } from './csr.js';
import { parseSpiffeId } from './spiffe-id.js';

// The fast path for X509-SVID leaves. @peculiar/x509 builds ~400 certificates/s; signatures allow ~27,000/s. So a
// DER TBSCertificate is built once per (issuer, SPIFFE ID, key type) with @peculiar/asn1-x509, using placeholders
// of fixed length for the fields that change per certificate; each certificate then copies the template, writes
// those bytes at known offsets, and signs it with crypto.sign.
//
// Leaf profile (X509-SVID = spiffe/spiffe standards/X509-SVID.md):
//   version v3; serial 20 bytes, positive, ≥ 150 random bits (RFC 5280 §4.1.2.2: ≤ 20 octets, positive);
//   issuer = the issuer certificate's subject, byte for byte; validity inside the issuer's (clamped, as SPIRE does);
//   subject O=<trust domain>, CN=<last path segment> — informative only: the identity is the URI SAN. An attribute
//   longer than RFC 5280's upper bound (64) is left out; if both are, the subject is empty and the SAN critical.
//   Extensions: SAN = exactly one URI, the SPIFFE ID (§2), critical iff the subject is empty (§3.1);
//   basicConstraints CA:false, critical (§4.1); keyUsage digitalSignature only, critical (§4.3: MUST be set and
//   critical, leaf MUST set digitalSignature, MUST NOT set keyCertSign or cRLSign); extKeyUsage serverAuth +
//   clientAuth (§4.4); authorityKeyIdentifier = the issuer's SKI; subjectKeyIdentifier = SHA-1 of the key (RFC
//   5280 §4.2.1.2 method 1).

export interface LeafIssuer {
  /** The issuing CA certificate (DER). Treated as immutable: its identity keys a cache. */
  certDer: Buffer;
  /** The issuing CA's private key (EC P-256 or P-384); its curve decides the signature algorithm. */
  key: KeyObject;
}

export interface LeafRequest {
  spiffeId: string;
  /** SubjectPublicKeyInfo DER of an uncompressed EC point, as returned by parseCsr (which checked the point). */
  spki: Buffer;
  keyType: LeafKeyType;
  notBefore: Date;
  notAfter: Date;
  /** 20 bytes, first byte 0x40–0x7f; random when absent. */
  serial?: Buffer;
}

export interface BuiltLeaf {
  der: Buffer;
  serial: Buffer;
  /** The validity written, after clamping to the issuer's and truncating to whole seconds. */
  notBefore: Date;
  notAfter: Date;
}

const SERIAL_LENGTH = 20;
const SKI_LENGTH = 20;
const UTC_TIME_LENGTH = 13;
// UTCTime covers 1950–2049 (RFC 5280 §4.1.2.5.1); the template's fixed-length time fields use it only.
const MIN_TIME = Date.UTC(1950, 0, 1);
const MAX_TIME = Date.UTC(2050, 0, 1);
const UB_ATTRIBUTE = 64; // RFC 5280 Appendix A: ub-common-name = ub-organization-name = 64
const POINT_LENGTH: Record<LeafKeyType, number> = { p256: 65, p384: 97 };
const id_at_commonName = '2.5.4.3';
const id_at_organizationName = '2.5.4.10';

const ISSUER_SIGNING: Record<string, { hash: 'sha256' | 'sha384'; algorithm: string }> = {
  prime256v1: { hash: 'sha256', algorithm: id_ecdsaWithSHA256 },
  secp384r1: { hash: 'sha384', algorithm: id_ecdsaWithSHA384 },
};

interface IssuerInfo {
  fingerprint: string;
  subject: Name;
  ski: Buffer;
  notBefore: number;
  notAfter: number;
  hash: 'sha256' | 'sha384';
  /** DER AlgorithmIdentifier of the signature, inside the TBS and after it. */
  signatureAlgorithm: AlgorithmIdentifier;
  signatureAlgorithmDer: Buffer;
  cert: X509Certificate;
  /** Private keys already checked to match this certificate. */
  keys: WeakSet<KeyObject>;
}

interface Template {
  tbs: Buffer;
  serialAt: number;
  notBeforeAt: number;
  notAfterAt: number;
  keyAt: number;
  skiAt: number;
}

class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    this.map.set(key, v);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
  }
  get size(): number {
    return this.map.size;
  }
}

export class LeafBuilder {
  private readonly templates: Lru<Template>;
  private readonly issuers = new Lru<IssuerInfo>(64);
  private readonly issuerByBuffer = new WeakMap<Buffer, IssuerInfo>();
  private readonly serialPool = Buffer.allocUnsafe(SERIAL_LENGTH * 256);
  private serialPoolAt = this.serialPool.length;

  constructor(maxTemplates = 10_000) {
    if (!Number.isInteger(maxTemplates) || maxTemplates < 1) throw new RangeError('maxTemplates must be a positive integer');
    this.templates = new Lru(maxTemplates);
  }

  /** Templates currently cached (for tests and metrics). */
  get cachedTemplates(): number {
    return this.templates.size;
  }

  build(issuer: LeafIssuer, req: LeafRequest): BuiltLeaf {
    const info = this.issuerInfo(issuer);
    const keyLength = POINT_LENGTH[req.keyType];
    if (keyLength === undefined) throw new BadRequestError(`unsupported key type ${String(req.keyType)}: only p256 and p384`);
    const prefix = spkiPrefix(req.keyType);
    if (req.spki.length !== prefix.length + keyLength || !req.spki.subarray(0, prefix.length).equals(prefix)) {
      throw new BadRequestError(`public key is not an uncompressed ${req.keyType === 'p256' ? 'P-256' : 'P-384'} SubjectPublicKeyInfo`);
    }
    const { notBefore, notAfter } = this.validity(info, req);
    const serial = req.serial === undefined ? this.randomSerial() : checkSerial(req.serial);

    const t = this.template(info, req.spiffeId, req.keyType);
    const tbs = Buffer.allocUnsafe(t.tbs.length);
    t.tbs.copy(tbs);
    serial.copy(tbs, t.serialAt);
    writeUtcTime(tbs, t.notBeforeAt, notBefore);
    writeUtcTime(tbs, t.notAfterAt, notAfter);
    const point = req.spki.subarray(prefix.length);
    point.copy(tbs, t.keyAt);
    // RFC 5280 §4.2.1.2 (1): SHA-1 of the BIT STRING subjectPublicKey, excluding tag, length and unused-bits byte.
    createHash('sha1').update(point).digest().copy(tbs, t.skiAt);

    const signature = sign(info.hash, tbs, issuer.key); // DER ECDSA-Sig-Value, as X.509 wants it
    return { der: wrapCertificate(tbs, info.signatureAlgorithmDer, signature), serial, notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
  }

  private validity(info: IssuerInfo, req: LeafRequest): { notBefore: number; notAfter: number } {
    const nb = req.notBefore.getTime();
    const na = req.notAfter.getTime();
    if (!Number.isFinite(nb) || !Number.isFinite(na)) throw new BadRequestError('notBefore and notAfter must be valid dates');
    // The issuer's validity bounds the leaf's: a leaf outside it would fail path validation anyway.
    const notBefore = Math.ceil(Math.max(nb, info.notBefore) / 1000) * 1000;
    const notAfter = Math.floor(Math.min(na, info.notAfter) / 1000) * 1000;
    if (notBefore >= notAfter) {
      throw new BadRequestError(`empty validity: notBefore ${new Date(notBefore).toISOString()} is not before notAfter ${new Date(notAfter).toISOString()} (within the issuer's validity)`);
    }
    if (notBefore < MIN_TIME || notAfter >= MAX_TIME) throw new BadRequestError('certificate validity must lie between 1950 and 2049 (UTCTime)');
    return { notBefore, notAfter };
  }

  private randomSerial(): Buffer {
    if (this.serialPoolAt === this.serialPool.length) {
      randomFillSync(this.serialPool);
      this.serialPoolAt = 0;
    }
    const serial = Buffer.from(this.serialPool.subarray(this.serialPoolAt, this.serialPoolAt + SERIAL_LENGTH));
    this.serialPool.fill(0, this.serialPoolAt, this.serialPoolAt + SERIAL_LENGTH);
    this.serialPoolAt += SERIAL_LENGTH;
    // 0x40–0x7f: positive (top bit clear), no leading zero octet (0x40 set), so always 20 octets; 158 random bits.
    serial[0] = 0x40 | (serial[0]! & 0x3f);
    return serial;
  }

  private issuerInfo(issuer: LeafIssuer): IssuerInfo {
    let info = this.issuerByBuffer.get(issuer.certDer);
    if (!info) {
      const fingerprint = createHash('sha256').update(issuer.certDer).digest('hex');
      info = this.issuers.get(fingerprint) ?? loadIssuer(issuer.certDer, fingerprint);
      this.issuers.set(fingerprint, info);
      this.issuerByBuffer.set(issuer.certDer, info);
    }
    if (!info.keys.has(issuer.key)) {
      if (issuer.key.type !== 'private' || !info.cert.checkPrivateKey(issuer.key)) {
        throw new Error('the issuer key is not the private key of the issuer certificate');
      }
      info.keys.add(issuer.key);
    }
    return info;
  }

  private template(info: IssuerInfo, spiffeId: string, keyType: LeafKeyType): Template {
    const cacheKey = `${info.fingerprint} ${keyType} ${spiffeId}`;
    let t = this.templates.get(cacheKey);
    if (!t) {
      t = buildTemplate(info, spiffeId, keyType);
      this.templates.set(cacheKey, t);
    }
    return t;
  }
}

/** A serial number as Vault prints it: lowercase hex octets joined by colons ("3a:0f:…"). */
export function formatSerial(serial: Buffer): string {
  return serial.toString('hex').replace(/(..)(?!$)/g, '$1:');
}

function checkSerial(serial: Buffer): Buffer {
  if (!Buffer.isBuffer(serial) || serial.length !== SERIAL_LENGTH || serial[0]! < 0x40 || serial[0]! > 0x7f) {
    throw new BadRequestError(`serial must be ${SERIAL_LENGTH} bytes with the first byte in 0x40–0x7f`);
  }
  return serial;
}

function loadIssuer(certDer: Buffer, fingerprint: string): IssuerInfo {
  const cert = new X509Certificate(certDer);
  if (!cert.ca) throw new Error('the issuer certificate is not a CA (basicConstraints cA is not true)');
  const parsed = AsnParser.parse(certDer, Certificate);
  const tbs = parsed.tbsCertificate;
  // The leaf's issuer must be the issuer's subject byte for byte. The template re-encodes the parsed Name, so
  // require the whole TBS to re-encode to the bytes that were signed: then the subject's encoding is exact too.
  if (!parsed.tbsCertificateRaw || !Buffer.from(AsnConvert.serialize(tbs)).equals(Buffer.from(parsed.tbsCertificateRaw))) {
    throw new Error('the issuer certificate is not in the DER form @peculiar/asn1-x509 re-encodes; its subject cannot be copied exactly');
  }
  let ski: Buffer | undefined;
  for (const ext of tbs.extensions ?? []) {
    if (ext.extnID === id_ce_subjectKeyIdentifier) ski = Buffer.from(AsnParser.parse(ext.extnValue.buffer, SubjectKeyIdentifier).buffer);
    if (ext.extnID === id_ce_keyUsage) {
      const ku = AsnParser.parse(ext.extnValue.buffer, KeyUsage);
      if ((ku.toNumber() & KeyUsageFlags.keyCertSign) === 0) throw new Error('the issuer certificate\'s keyUsage lacks keyCertSign');
    }
  }
  // RFC 5280 §4.2.1.2: CA certificates MUST carry a subjectKeyIdentifier; the leaf's AKI repeats it.
  if (!ski || ski.length === 0) throw new Error('the issuer certificate has no subjectKeyIdentifier');
  const curve = cert.publicKey.asymmetricKeyDetails?.namedCurve ?? '';
  const signing = ISSUER_SIGNING[curve];
  if (cert.publicKey.asymmetricKeyType !== 'ec' || !signing) throw new Error(`unsupported issuer key (${cert.publicKey.asymmetricKeyType} ${curve}): only EC P-256 and P-384`);
  // RFC 5758 §3.2: the ECDSA AlgorithmIdentifier has no parameters.
  const signatureAlgorithm = new AlgorithmIdentifier({ algorithm: signing.algorithm });
  return {
    fingerprint,
    subject: tbs.subject,
    ski,
    notBefore: tbs.validity.notBefore.getTime().getTime(),
    notAfter: tbs.validity.notAfter.getTime().getTime(),
    hash: signing.hash,
    signatureAlgorithm,
    signatureAlgorithmDer: Buffer.from(AsnConvert.serialize(signatureAlgorithm)),
    cert,
    keys: new WeakSet(),
  };
}

function leafSubject(trustDomain: string, path: string): Name {
  const rdn = (type: string, value: string) => new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: value }) })]);
  const rdns: RelativeDistinguishedName[] = [];
  const service = path.slice(path.lastIndexOf('/') + 1);
  if (trustDomain.length <= UB_ATTRIBUTE) rdns.push(rdn(id_at_organizationName, trustDomain));
  if (service.length <= UB_ATTRIBUTE) rdns.push(rdn(id_at_commonName, service));
  return new Name(rdns);
}

function ext(extnID: string, critical: boolean, value: object): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

interface Placeholders { serial: Buffer; notBefore: Date; notAfter: Date; point: Buffer; ski: Buffer }

function randomPlaceholders(keyType: LeafKeyType): Placeholders {
  const r = randomFillSync(Buffer.alloc(SERIAL_LENGTH + SKI_LENGTH + POINT_LENGTH[keyType] + 8));
  const serial = r.subarray(0, SERIAL_LENGTH);
  serial[0] = 0x40 | (serial[0]! & 0x3f);
  const ski = r.subarray(SERIAL_LENGTH, SERIAL_LENGTH + SKI_LENGTH);
  const point = r.subarray(SERIAL_LENGTH + SKI_LENGTH, SERIAL_LENGTH + SKI_LENGTH + POINT_LENGTH[keyType]);
  point[0] = 0x04;
  const span = (MAX_TIME - MIN_TIME) / 1000;
  const second = (at: number) => MIN_TIME + (r.readUInt32BE(at) % span) * 1000;
  return { serial, ski, point, notBefore: new Date(second(r.length - 8)), notAfter: new Date(second(r.length - 4)) };
}

function buildTemplate(issuer: IssuerInfo, spiffeId: string, keyType: LeafKeyType): Template {
  const id = parseSpiffeId(spiffeId);
  // X509-SVID §3.1: leaf certificate SPIFFE IDs MUST have a non-root path component.
  if (id.path === '') throw new BadRequestError(`SPIFFE ID ${JSON.stringify(spiffeId)} has no path: a workload (leaf) certificate needs one`);
  const subject = leafSubject(id.trustDomain, id.path);
  const subjectEmpty = subject.length === 0;
  // Placeholders are random, so a SPIFFE ID cannot be made to collide with them; a (vanishingly rare) chance
  // collision with other template bytes is caught by the exactly-once check and retried.
  for (let attempt = 0; attempt < 8; attempt++) {
    const p = randomPlaceholders(keyType);
    if (utcTime(p.notBefore).equals(utcTime(p.notAfter))) continue;
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: new Uint8Array(p.serial).buffer,
      signature: issuer.signatureAlgorithm,
      issuer: issuer.subject,
      validity: new Validity({ notBefore: p.notBefore, notAfter: p.notAfter }),
      subject,
      subjectPublicKeyInfo: AsnParser.parse(Buffer.concat([spkiPrefix(keyType), p.point]), SubjectPublicKeyInfo),
      extensions: new Extensions([
        ext(id_ce_subjectAltName, subjectEmpty, new SubjectAlternativeName([new GeneralName({ uniformResourceIdentifier: id.uri })])),
        ext(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
        ext(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
        ext(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
        ext(id_ce_authorityKeyIdentifier, false, new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(issuer.ski) })),
        ext(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(p.ski)),
      ]),
    });
    const der = Buffer.from(AsnConvert.serialize(tbs));
    // Each placeholder must occur exactly once, right after the tag and length it must have.
    const serialAt = onlyAt(der, p.serial, Buffer.from([0x02, SERIAL_LENGTH]));
    const notBeforeAt = onlyAt(der, utcTime(p.notBefore), Buffer.from([0x17, UTC_TIME_LENGTH]));
    const notAfterAt = onlyAt(der, utcTime(p.notAfter), Buffer.from([0x17, UTC_TIME_LENGTH]));
    const keyAt = onlyAt(der, p.point, Buffer.from([0x03, POINT_LENGTH[keyType] + 1, 0x00]));
    const skiAt = onlyAt(der, p.ski, Buffer.from([0x04, SKI_LENGTH]));
    if (serialAt < 0 || notBeforeAt < 0 || notAfterAt < 0 || keyAt < 0 || skiAt < 0) continue;
    return { tbs: der, serialAt, notBeforeAt, notAfterAt, keyAt, skiAt };
  }
  throw new Error('could not build a leaf certificate template with unique placeholders');
}

/** The offset of `value` if it occurs exactly once in `der` and right after `header`, else -1. */
function onlyAt(der: Buffer, value: Buffer, header: Buffer): number {
  const at = der.indexOf(value);
  if (at < header.length || der.indexOf(value, at + 1) !== -1) return -1;
  return der.subarray(at - header.length, at).equals(header) ? at : -1;
}

function utcTime(d: Date): Buffer {
  const b = Buffer.alloc(UTC_TIME_LENGTH);
  writeUtcTime(b, 0, d.getTime());
  return b;
}

/** UTCTime YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1: seconds present, Zulu). `ms` lies in 1950–2049. */
function writeUtcTime(b: Buffer, at: number, ms: number): void {
  const d = new Date(ms);
  const fields = [d.getUTCFullYear() % 100, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()];
  for (let i = 0; i < 6; i++) {
    b[at + 2 * i] = 0x30 + Math.floor(fields[i]! / 10);
    b[at + 2 * i + 1] = 0x30 + (fields[i]! % 10);
  }
  b[at + 12] = 0x5a; // 'Z'
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0x81, n]);
  if (n < 0x10000) return Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING } (RFC 5280 §4.1). */
function wrapCertificate(tbs: Buffer, signatureAlgorithm: Buffer, signature: Buffer): Buffer {
  const bitLength = derLength(signature.length + 1);
  const bodyLength = tbs.length + signatureAlgorithm.length + 1 + bitLength.length + 1 + signature.length;
  const outerLength = derLength(bodyLength);
  const out = Buffer.allocUnsafe(1 + outerLength.length + bodyLength);
  let at = 0;
  out[at++] = 0x30;
  at += outerLength.copy(out, at);
  at += tbs.copy(out, at);
  at += signatureAlgorithm.copy(out, at);
  out[at++] = 0x03;
  at += bitLength.copy(out, at);
  out[at++] = 0x00; // no unused bits
  signature.copy(out, at);
  return out;
}

import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { AsnParser } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { ECParameters, id_ecdsaWithSHA256, id_ecdsaWithSHA384, id_ecPublicKey, id_secp256r1, id_secp384r1 } from '@peculiar/asn1-ecc';
import {
  BasicConstraints, Extensions, SubjectAlternativeName, id_ce_basicConstraints, id_ce_subjectAltName, type GeneralName,
} from '@peculiar/asn1-x509';
import { BadRequestError } from '../core/errors.js';

// A workload's PKCS#10 request (RFC 2986) is untrusted input. It proves possession of a key and carries that
// public key; nothing else in it decides what gets issued: the subject is ignored, and the extensions a CSR may
// ask for are limited to ones the leaf would carry anyway (one URI SAN equal to the expected SPIFFE ID, CA:false).

export type LeafKeyType = 'p256' | 'p384';

export interface ParsedCsr {
  keyType: LeafKeyType;
  /** Canonical SubjectPublicKeyInfo DER of the request's key (what LeafBuilder takes). */
  spki: Buffer;
  publicKey: KeyObject;
}

export interface ParseCsrOptions {
  /** The SPIFFE ID the certificate will carry; a URI SAN in the CSR must equal it. */
  expectedSpiffeId?: string;
}

export const MAX_CSR_BYTES = 16 * 1024;

const PEM_LABEL = 'CERTIFICATE REQUEST';
const id_extensionRequest = '1.2.840.113549.1.9.14'; // PKCS#9

interface Curve { keyType: LeafKeyType; crv: 'P-256' | 'P-384'; pointLength: number; spkiPrefix: Buffer; parametersDer: Buffer }

// SubjectPublicKeyInfo DER up to the BIT STRING's first content byte: SEQUENCE { SEQUENCE { id-ecPublicKey, curve },
// BIT STRING (0 unused bits) }. The uncompressed point (04 || X || Y) follows.
const CURVES: Record<string, Curve> = {
  [id_secp256r1]: {
    keyType: 'p256', crv: 'P-256', pointLength: 65,
    spkiPrefix: Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), parametersDer: Buffer.from('06082a8648ce3d030107', 'hex'),
  },
  [id_secp384r1]: {
    keyType: 'p384', crv: 'P-384', pointLength: 97,
    spkiPrefix: Buffer.from('3076301006072a8648ce3d020106052b81040022036200', 'hex'), parametersDer: Buffer.from('06052b81040022', 'hex'),
  },
};

/** The SPKI DER prefix for a key type (the point follows it). */
export function spkiPrefix(keyType: LeafKeyType): Buffer {
  return keyType === 'p256' ? CURVES[id_secp256r1]!.spkiPrefix : CURVES[id_secp384r1]!.spkiPrefix;
}

const SIGNATURE_HASHES: Record<string, 'sha256' | 'sha384'> = {
  [id_ecdsaWithSHA256]: 'sha256',
  [id_ecdsaWithSHA384]: 'sha384',
};

// DER AlgorithmIdentifier of each: SEQUENCE { OID } with no parameters.
const SIGNATURE_ALGORITHM_DER: Record<string, Buffer> = {
  [id_ecdsaWithSHA256]: Buffer.from('300a06082a8648ce3d040302', 'hex'),
  [id_ecdsaWithSHA384]: Buffer.from('300a06082a8648ce3d040303', 'hex'),
};

// Names for the key algorithms a client is most likely to send, so the refusal says what it saw.
const KEY_ALGORITHM_NAMES: Record<string, string> = {
  '1.2.840.113549.1.1.1': 'RSA',
  '1.2.840.113549.1.1.10': 'RSA-PSS',
  '1.2.840.10040.4.1': 'DSA',
  '1.3.101.110': 'X25519',
  '1.3.101.111': 'X448',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};
const CURVE_NAMES: Record<string, string> = { '1.3.132.0.35': 'P-521', '1.3.132.0.10': 'secp256k1', '1.3.132.0.33': 'P-224' };

function bad(message: string): never {
  throw new BadRequestError(message);
}

function quoted(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
}

/** Parses, verifies and vets a CSR; every refusal is a BadRequestError that says what was wrong. */
export function parseCsr(input: string | Buffer, opts: ParseCsrOptions = {}): ParsedCsr {
  const der = toDer(input);
  const header = checkSingleDerElement(der);
  let csr: CertificationRequest;
  try {
    csr = AsnParser.parse(der, CertificationRequest);
  } catch (err) {
    bad(`CSR is not a valid PKCS#10 certification request: ${String((err as Error)?.message ?? err).slice(0, 200)}`);
  }
  const info = csr.certificationRequestInfo;
  if (info.version !== 0) bad(`CSR has version ${info.version}; PKCS#10 defines only version 1 (0)`);
  if (!csr.certificationRequestInfoRaw) bad('CSR is not a valid PKCS#10 certification request: no certificationRequestInfo');

  const pki = info.subjectPKInfo;
  const curve = keyCurve(pki.algorithm.algorithm, pki.algorithm.parameters);
  const hash = SIGNATURE_HASHES[csr.signatureAlgorithm.algorithm];
  if (!hash) bad(`unsupported CSR signature algorithm ${csr.signatureAlgorithm.algorithm}: only ecdsa-with-SHA256 and ecdsa-with-SHA384 are accepted`);
  const criRaw = Buffer.from(csr.certificationRequestInfoRaw);
  const signature = Buffer.from(csr.signature);
  checkOuterEncoding(der, header, criRaw, csr.signatureAlgorithm.algorithm, signature);
  const { spki, publicKey } = importPoint(curve, Buffer.from(pki.subjectPublicKey));

  // The signature covers the exact bytes of certificationRequestInfo as received.
  let ok = false;
  try {
    ok = verify(hash, criRaw, publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) bad('CSR signature does not verify: the request was altered or was not signed by the key it carries');

  checkAttributes(csr, opts);
  return { keyType: curve.keyType, spki, publicKey };
}

function toDer(input: string | Buffer): Buffer {
  if (typeof input === 'string') {
    if (Buffer.byteLength(input, 'utf8') > MAX_CSR_BYTES) bad(`CSR is larger than ${MAX_CSR_BYTES / 1024} KiB`);
    return derFromPem(input);
  }
  if (!Buffer.isBuffer(input)) bad('CSR must be a PEM string or a DER buffer');
  if (input.length > MAX_CSR_BYTES) bad(`CSR is larger than ${MAX_CSR_BYTES / 1024} KiB`);
  if (input.length === 0) bad('CSR is empty');
  if (input[0] === 0x2d /* '-' */) bad('CSR buffer holds PEM text: pass PEM as a string, or the DER bytes as a buffer');
  return input;
}

// RFC 7468: exactly one `CERTIFICATE REQUEST` block; explanatory text around it is allowed, headers are not.
function derFromPem(pem: string): Buffer {
  const begins = [...pem.matchAll(/-----BEGIN ([^\r\n]*?)-----/g)];
  if (begins.length === 0) bad('CSR is not PEM: expected a "-----BEGIN CERTIFICATE REQUEST-----" block');
  if (begins.length > 1) bad(`CSR PEM must hold exactly one block; found ${begins.length}`);
  const label = begins[0]![1]!;
  if (label !== PEM_LABEL) bad(`CSR PEM block is labelled ${quoted(label)}; expected "${PEM_LABEL}"`);
  const start = begins[0]!.index! + begins[0]![0].length;
  const endMarker = `-----END ${PEM_LABEL}-----`;
  const end = pem.indexOf(endMarker, start);
  if (end === -1) bad(`CSR PEM has no "${endMarker}" line`);
  const body = pem.slice(start, end).replace(/\s+/g, '');
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(body)) bad('CSR PEM body is not valid base64');
  const der = Buffer.from(body, 'base64');
  if (der.length === 0) bad('CSR PEM block is empty');
  return der;
}

/**
 * The buffer must be one DER element and nothing after it: the ASN.1 parser stops after the first element and
 * would ignore trailing bytes. This reads only the outer tag and length.
 */
function checkSingleDerElement(der: Buffer): number {
  if (der.length < 2 || der[0] !== 0x30) bad('CSR is not DER: it does not start with a SEQUENCE');
  const first = der[1]!;
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else {
    const n = first & 0x7f;
    // 0x80 is BER's indefinite length; DER never uses it, nor more length bytes than a 16 KiB input needs.
    if (n === 0 || n > 2 || der.length < 2 + n) bad('CSR is not DER: bad length encoding');
    length = n === 1 ? der[2]! : der.readUInt16BE(2);
    header = 2 + n;
  }
  if (header + length !== der.length) bad(`CSR is not one DER element: ${der.length - header - length > 0 ? 'trailing bytes after it' : 'it is truncated'}`);
  return header;
}

/**
 * The ASN.1 decoder is lenient (a wrong tag on signatureAlgorithm, non-zero unused bits in the signature BIT STRING
 * pass). The signed part is checked by the signature; the rest must be exactly the DER that follows it:
 * AlgorithmIdentifier without parameters (RFC 5758 §3.2) and BIT STRING with no unused bits.
 */
function checkOuterEncoding(der: Buffer, header: number, criRaw: Buffer, algorithm: string, signature: Buffer): void {
  const bitStringLength = signature.length + 1;
  if (bitStringLength > 0xff) bad('CSR signature is too long for an ECDSA signature');
  const tail = Buffer.concat([
    SIGNATURE_ALGORITHM_DER[algorithm]!,
    Buffer.from(bitStringLength < 0x80 ? [0x03, bitStringLength, 0x00] : [0x03, 0x81, bitStringLength, 0x00]),
    signature,
  ]);
  if (header + criRaw.length + tail.length !== der.length || !der.subarray(header, header + criRaw.length).equals(criRaw) || !der.subarray(header + criRaw.length).equals(tail)) {
    bad('CSR is not DER: its signatureAlgorithm or signature field is not canonically encoded (ECDSA parameters must be absent)');
  }
}

/** The curve of the request's key; anything but EC P-256/P-384 is refused here, before any costly work. */
function keyCurve(algorithm: string, parameters: ArrayBuffer | null | undefined): Curve {
  if (algorithm !== id_ecPublicKey) {
    bad(`unsupported key type ${KEY_ALGORITHM_NAMES[algorithm] ?? algorithm}: only EC P-256 and P-384 keys are accepted`);
  }
  if (!parameters) bad('CSR EC key has no curve parameters: only the named curves P-256 and P-384 are accepted');
  // Fast path: the parameters are almost always exactly one of the two named-curve OIDs.
  const params = Buffer.from(parameters);
  for (const c of Object.values(CURVES)) if (params.equals(c.parametersDer)) return c;
  let namedCurve: string | undefined;
  try {
    namedCurve = AsnParser.parse(parameters, ECParameters).namedCurve;
  } catch {
    bad('CSR EC key parameters are malformed');
  }
  const curve = namedCurve ? CURVES[namedCurve] : undefined;
  if (!curve) {
    const name = namedCurve ? (CURVE_NAMES[namedCurve] ?? namedCurve) : 'explicit curve parameters';
    bad(`unsupported key type EC ${name}: only EC P-256 and P-384 keys are accepted`);
  }
  return curve;
}

function importPoint(curve: Curve, point: Buffer): { spki: Buffer; publicKey: KeyObject } {
  if (point.length !== curve.pointLength || point[0] !== 0x04) {
    if (point[0] === 0x02 || point[0] === 0x03) bad(`CSR public key is a compressed ${curve.crv} point; send the uncompressed form`);
    bad(`CSR public key is not an uncompressed ${curve.crv} point (${curve.pointLength} bytes starting with 04)`);
  }
  const n = (curve.pointLength - 1) / 2;
  let publicKey: KeyObject;
  try {
    // A JWK import is about twice as fast as an SPKI DER import, and it rejects points that are not on the curve.
    publicKey = createPublicKey({
      key: { kty: 'EC', crv: curve.crv, x: point.subarray(1, 1 + n).toString('base64url'), y: point.subarray(1 + n).toString('base64url') },
      format: 'jwk',
    });
  } catch {
    bad(`CSR public key is not a valid point on ${curve.crv}`);
  }
  return { spki: Buffer.concat([curve.spkiPrefix, point]), publicKey };
}

function checkAttributes(csr: CertificationRequest, opts: ParseCsrOptions): void {
  const requests = (csr.certificationRequestInfo.attributes ?? []).filter((a) => a.type === id_extensionRequest);
  if (requests.length === 0) return;
  if (requests.length > 1 || requests[0]!.values.length !== 1) bad('CSR carries more than one extensionRequest');
  let extensions: Extensions;
  try {
    extensions = AsnParser.parse(requests[0]!.values[0]!, Extensions);
  } catch {
    bad('CSR extensionRequest is malformed');
  }
  const seen = new Set<string>();
  for (const ext of extensions) {
    // RFC 5280 §4.2: a certificate MUST NOT include more than one instance of an extension; neither may a request.
    if (seen.has(ext.extnID)) bad(`CSR asks for extension ${ext.extnID} more than once`);
    seen.add(ext.extnID);
    const value = ext.extnValue.buffer;
    if (ext.extnID === id_ce_basicConstraints) {
      let bc: BasicConstraints;
      try {
        bc = AsnParser.parse(value, BasicConstraints);
      } catch {
        bad('CSR basicConstraints extension is malformed');
      }
      if (bc.cA) bad('CSR asks for CA:true; a workload certificate cannot be a CA');
    } else if (ext.extnID === id_ce_subjectAltName) {
      let names: SubjectAlternativeName;
      try {
        names = AsnParser.parse(value, SubjectAlternativeName);
      } catch {
        bad('CSR subjectAltName extension is malformed');
      }
      checkSan([...names], opts.expectedSpiffeId);
    }
    // Any other requested extension (keyUsage, extKeyUsage, …) is ignored: the leaf's extensions are fixed.
  }
}

function sanKind(n: GeneralName): string {
  if (n.dNSName !== undefined) return `a DNS name SAN (${quoted(n.dNSName)})`;
  if (n.iPAddress !== undefined) return `an IP address SAN (${n.iPAddress})`;
  if (n.rfc822Name !== undefined) return `an email SAN (${quoted(n.rfc822Name)})`;
  if (n.directoryName !== undefined) return 'a directory name SAN';
  if (n.otherName !== undefined) return `an otherName SAN (${n.otherName.typeId})`;
  if (n.registeredID !== undefined) return 'a registeredID SAN';
  return 'an unsupported SAN type';
}

// X509-SVID §2: exactly one URI SAN, the SPIFFE ID. Aegis issues nothing else, so a CSR may ask only for that.
function checkSan(names: GeneralName[], expected: string | undefined): void {
  if (names.length === 0) bad('CSR subjectAltName extension is empty');
  const uris: string[] = [];
  for (const n of names) {
    if (n.uniformResourceIdentifier === undefined) {
      bad(`CSR asks for ${sanKind(n)}; a workload certificate carries only its SPIFFE ID as a URI SAN`);
    }
    uris.push(n.uniformResourceIdentifier);
  }
  if (uris.length > 1) bad(`CSR asks for ${uris.length} URI SANs; an X509-SVID carries exactly one, the SPIFFE ID`);
  if (expected === undefined) bad(`CSR asks for URI SAN ${quoted(uris[0]!)}, but no SPIFFE ID was expected for this request`);
  if (uris[0] !== expected) bad(`CSR asks for URI SAN ${quoted(uris[0]!)}, but this workload's SPIFFE ID is ${quoted(expected)}`);
}

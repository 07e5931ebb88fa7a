import { createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { BadRequestError } from '../../core/errors.js';
import type { Issuer } from '../ca.js';
import { algorithmFor, randomSerialHex, x509 } from '../ca-certs.js';
import { toPem } from '../pem.js';
import type { CertNames } from './names.js';
import type { PkiKeyType, PkiRole } from './roles.js';

// Certificates of the Vault PKI subset, made with @peculiar/x509 (issuance here is low volume) and signed by the
// trust domain's active intermediate. Profile (RFC 5280): random 20-byte serial (≥ 150 random bits, §4.1.2.2);
// subject CN only; SAN with the DNS, email, IP and URI names, critical when the subject is empty (§4.2.1.6);
// basicConstraints CA:false (critical); keyUsage digitalSignature, plus keyEncipherment for RSA keys (an EC key
// cannot encipher), critical (§4.2.1.3); extKeyUsage serverAuth/clientAuth per the role's flags (§4.2.1.12);
// authority and subject key identifiers (§4.2.1.1, §4.2.1.2).

const generateKeyPairAsync = promisify(generateKeyPair);
// Vault's not_before_duration default: peers' clocks differ.
const BACKDATE_MS = 30_000;
const EC_BITS: Record<string, number> = { prime256v1: 256, secp384r1: 384, secp521r1: 521 };

export interface SubjectKey {
  /** SubjectPublicKeyInfo DER. */
  spki: Buffer;
  keyType: PkiKeyType;
  bits: number;
}

export interface GeneratedKey extends SubjectKey {
  privateKey: KeyObject;
}

/** A new key pair of the role's type and size (issue/:role: the server makes the key, as Vault does). */
export async function generateRoleKey(role: PkiRole): Promise<GeneratedKey> {
  const { publicKey, privateKey } = role.key_type === 'ec'
    ? await generateKeyPairAsync('ec', { namedCurve: role.key_bits === 384 ? 'P-384' : 'P-256' })
    : await generateKeyPairAsync('rsa', { modulusLength: role.key_bits });
  return { spki: publicKey.export({ format: 'der', type: 'spki' }), keyType: role.key_type, bits: role.key_bits, privateKey };
}

/**
 * The private key as Vault returns it for `format=pem`: `private_key_format=der` (the default) gives the
 * key type's own DER in PEM (SEC 1 "EC PRIVATE KEY", PKCS #1 "RSA PRIVATE KEY"); `pkcs8` gives "PRIVATE KEY".
 */
export function privateKeyPem(key: GeneratedKey, format: 'der' | 'pkcs8'): string {
  const type = format === 'pkcs8' ? 'pkcs8' : key.keyType === 'ec' ? 'sec1' : 'pkcs1';
  return key.privateKey.export({ format: 'pem', type }) as string;
}

export interface ParsedRequest extends SubjectKey {
  commonName: string;
  dnsNames: string[];
  emails: string[];
  ips: string[];
  uris: string[];
}

/** Parses a PEM PKCS #10 request and checks its self-signature (proof that the requester holds the key). */
export async function readCsr(pem: string): Promise<ParsedRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem.trim());
  } catch {
    throw new BadRequestError('csr: not a PEM PKCS#10 certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
  }
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw new BadRequestError('csr: its signature does not verify with the key it carries; make it again with that key (openssl req -new -key …)');
  const spki = Buffer.from(csr.publicKey.rawData);
  const names: Pick<ParsedRequest, 'dnsNames' | 'emails' | 'ips' | 'uris'> = { dnsNames: [], emails: [], ips: [], uris: [] };
  const sanExt = csr.getExtension('2.5.29.17');
  if (sanExt) {
    for (const n of new x509.SubjectAlternativeNameExtension(sanExt.rawData).names.items) {
      if (n.type === 'dns') names.dnsNames.push(n.value);
      else if (n.type === 'email') names.emails.push(n.value);
      else if (n.type === 'ip') names.ips.push(n.value);
      else if (n.type === 'url') names.uris.push(n.value);
      else throw new BadRequestError(`csr: subject alternative names of type ${n.type} are not supported; use DNS, email, IP or URI names`);
    }
  }
  return { ...subjectKey(spki), commonName: csr.subjectName.getField('CN')[0] ?? '', ...names };
}

function subjectKey(spki: Buffer): SubjectKey {
  const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '';
    const bits = EC_BITS[curve];
    if (!bits) throw new BadRequestError(`csr: EC curve ${curve || '(unknown)'} is not supported; use P-256, P-384 or P-521`);
    return { spki, keyType: 'ec', bits };
  }
  if (key.asymmetricKeyType === 'rsa') return { spki, keyType: 'rsa', bits: key.asymmetricKeyDetails?.modulusLength ?? 0 };
  throw new BadRequestError(`csr: ${key.asymmetricKeyType ?? 'its'} keys are not supported; use an EC or RSA key`);
}

/** Vault: a CSR's key must be of the role's type and at least the role's size. */
export function checkCsrKey(role: PkiRole, roleName: string, key: SubjectKey): void {
  if (key.keyType !== role.key_type) throw new BadRequestError(`role "${roleName}" requires keys of type ${role.key_type}, but the CSR's key is ${key.keyType}`);
  if (key.bits < role.key_bits) {
    throw new BadRequestError(`role "${roleName}" requires a key of at least ${role.key_bits} bits, but the CSR's key has ${key.bits}`);
  }
}

export interface LeafSpec {
  names: CertNames;
  key: SubjectKey;
  serverAuth: boolean;
  clientAuth: boolean;
  notAfter: Date;
}

export interface SignedLeaf {
  pem: string;
  /** Hex, no separators. */
  serial: string;
  notAfter: Date;
}

/** Signs a leaf for `spec` with the active intermediate. */
export async function signLeaf(issuer: Issuer, spec: LeafSpec): Promise<SignedLeaf> {
  const { names } = spec;
  const sans: x509.JsonGeneralName[] = [
    ...names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...names.emails.map((value) => ({ type: 'email' as const, value })),
    ...names.ips.map((value) => ({ type: 'ip' as const, value })),
    ...names.uris.map((value) => ({ type: 'url' as const, value })),
  ];
  const subject: x509.JsonName = names.commonName === '' ? [] : [{ CN: [names.commonName] }];
  if (subject.length === 0 && sans.length === 0) throw new BadRequestError('the certificate would name nothing: give a common_name or at least one SAN');
  const usages = [...(spec.serverAuth ? [x509.ExtendedKeyUsage.serverAuth] : []), ...(spec.clientAuth ? [x509.ExtendedKeyUsage.clientAuth] : [])];
  const issuerSki = issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (spec.key.keyType === 'rsa' ? x509.KeyUsageFlags.keyEncipherment : 0), true),
    await x509.SubjectKeyIdentifierExtension.create(spec.key.spki),
    issuerSki ? new x509.AuthorityKeyIdentifierExtension(issuerSki.keyId) : await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
  ];
  if (usages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(usages, false));
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, subject.length === 0));
  // Validity inside the issuer's, to the second (the encoding's precision).
  const notAfter = new Date(Math.floor(Math.min(spec.notAfter.getTime(), issuer.notAfter.getTime()) / 1000) * 1000);
  const notBefore = new Date(Math.max(Date.now() - BACKDATE_MS, issuer.cert.notBefore.getTime()));
  const serial = randomSerialHex();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject,
    issuer: issuer.cert.subjectName,
    notBefore,
    notAfter,
    publicKey: spec.key.spki,
    signingKey: issuer.cryptoKey,
    signingAlgorithm: algorithmFor(issuer.keyType),
    extensions,
  });
  return { pem: toPem(Buffer.from(cert.rawData)), serial, notAfter: cert.notAfter };
}

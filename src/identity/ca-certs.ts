import 'reflect-metadata';
import { createPrivateKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type EcParams = webcrypto.EcKeyGenParams & webcrypto.EcdsaParams;
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

// CA certificates and CRLs are made with @peculiar/x509 (low volume, so its speed does not matter); only
// workload leaves take the template fast path in leaf-builder.ts.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type CaKeyType = 'p256' | 'p384';

const ALGS: Record<CaKeyType, EcParams> = {
  p256: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  p384: { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' },
};

/** A CA certificate with its private key, as kept inside the barrier. */
export interface CaMaterial {
  certPem: string;
  /** PKCS#8 DER, base64. */
  key: string;
}

export interface LoadedCa {
  cert: x509.X509Certificate;
  certDer: Buffer;
  certPem: string;
  /** Node's view of the same certificate: fast signature checks of peers' chains. */
  nodeCert: X509Certificate;
  /** For crypto.sign (leaves). */
  keyObject: KeyObject;
  /** For @peculiar/x509 (CA certificates, CRLs). */
  cryptoKey: CryptoKey;
  keyType: CaKeyType;
  notAfter: Date;
}

export function algorithmFor(keyType: CaKeyType): EcParams {
  return ALGS[keyType];
}

/** A positive serial with ≥ 150 random bits, hex. */
export function randomSerialHex(): string {
  const b = randomBytes(20);
  b[0] = 0x40 | (b[0]! & 0x3f);
  return b.toString('hex');
}

async function generateKeys(keyType: CaKeyType): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALGS[keyType], true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function exportKey(key: CryptoKey): Promise<string> {
  return Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key)).toString('base64');
}

function caExtensions(pathLength: number | undefined): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
}

export interface CaSpec {
  trustDomain: string;
  keyType: CaKeyType;
  commonName: string;
  notBefore: Date;
  notAfter: Date;
}

/** A self-signed root. X509-SVID §5: a signing certificate MAY carry the trust domain's SPIFFE ID as URI SAN. */
export async function createRoot(spec: CaSpec): Promise<CaMaterial> {
  const keys = await generateKeys(spec.keyType);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: `CN=${spec.commonName}, O=${spec.trustDomain}`,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    keys,
    signingAlgorithm: ALGS[spec.keyType],
    extensions: [
      ...caExtensions(undefined),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${spec.trustDomain}` }]),
    ],
  });
  return { certPem: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

/** A CA certificate for `subjectKey` signed by `issuer`: an intermediate, or a cross-signed root. */
export async function signCaCertificate(
  issuer: LoadedCa,
  subject: { name: string; publicKey: CryptoKey | x509.PublicKey },
  spec: { trustDomain: string; notBefore: Date; notAfter: Date; pathLength?: number },
): Promise<x509.X509Certificate> {
  const notAfter = spec.notAfter > issuer.notAfter ? issuer.notAfter : spec.notAfter;
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: subject.name,
    issuer: issuer.cert.subject,
    notBefore: spec.notBefore,
    notAfter,
    publicKey: subject.publicKey,
    signingKey: issuer.cryptoKey,
    signingAlgorithm: ALGS[issuer.keyType],
    extensions: [
      ...caExtensions(spec.pathLength),
      await x509.SubjectKeyIdentifierExtension.create(subject.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${spec.trustDomain}` }]),
    ],
  });
}

/** A new intermediate key pair and its certificate from `root` (path length 0: it signs only leaves). */
export async function createIntermediate(root: LoadedCa, spec: CaSpec): Promise<CaMaterial> {
  const keys = await generateKeys(spec.keyType);
  const cert = await signCaCertificate(root, { name: `CN=${spec.commonName}, O=${spec.trustDomain}`, publicKey: keys.publicKey }, { ...spec, pathLength: 0 });
  return { certPem: cert.toString('pem'), key: await exportKey(keys.privateKey) };
}

export async function loadCa(m: CaMaterial): Promise<LoadedCa> {
  const cert = new x509.X509Certificate(m.certPem);
  const keyDer = Buffer.from(m.key, 'base64');
  const keyObject = createPrivateKey({ key: keyDer, format: 'der', type: 'pkcs8' });
  const curve = keyObject.asymmetricKeyDetails?.namedCurve;
  const keyType: CaKeyType = curve === 'secp384r1' ? 'p384' : 'p256';
  const cryptoKey = await webcrypto.subtle.importKey('pkcs8', keyDer, ALGS[keyType], false, ['sign']);
  const certDer = Buffer.from(cert.rawData);
  return { cert, certDer, certPem: m.certPem, nodeCert: new X509Certificate(certDer), keyObject, cryptoKey, keyType, notAfter: cert.notAfter };
}

export interface CrlEntry {
  serial: string;
  revokedAt: Date;
}

/** A CRL (RFC 5280 §5) signed by `issuer`, with the CRL number and authority key identifier it requires. */
export async function createCrl(issuer: LoadedCa, entries: readonly CrlEntry[], crlNumber: number, nextUpdate: Date): Promise<Buffer> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: issuer.cert.subject,
    thisUpdate: new Date(),
    nextUpdate,
    signingKey: issuer.cryptoKey,
    signingAlgorithm: ALGS[issuer.keyType],
    entries: entries.map((e) => ({ serialNumber: e.serial, revocationDate: e.revokedAt, reason: x509.X509CrlReason.keyCompromise })),
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
      new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(crlNumber))),
    ],
  });
  return Buffer.from(crl.rawData);
}

export { x509 };

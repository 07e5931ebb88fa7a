import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

// Test PKI made with @peculiar/x509 (an independent producer of CA certificates and CSRs) and with the openssl CLI.

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type Curve = 'p256' | 'p384';

export const EC: Record<Curve, webcrypto.EcKeyGenParams & webcrypto.EcdsaParams> = {
  p256: { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' },
  p384: { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' },
};

export const DAY = 86_400_000;

export function toPem(der: Buffer | ArrayBuffer, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export interface KeyPair {
  keys: CryptoKeyPair;
  /** Node private key (TLS, crypto.sign). */
  privateKey: KeyObject;
  privatePem: string;
}

export async function generateKeyPair(curve: Curve): Promise<KeyPair> {
  const keys = (await webcrypto.subtle.generateKey(EC[curve], true, ['sign', 'verify'])) as CryptoKeyPair;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return { keys, privateKey, privatePem: toPem(pkcs8, 'PRIVATE KEY') };
}

export interface TestCa {
  rootPem: string;
  rootDer: Buffer;
  intermediatePem: string;
  intermediateDer: Buffer;
  /** The intermediate's private key: it signs the leaves. */
  issuerKey: KeyObject;
  intermediate: x509.X509Certificate;
}

/** A root (self-signed) and an intermediate (path length 0) for trust domain `td`; `curve` for both keys. */
export async function makeCa(curve: Curve, td = 'example.org', lifetimeDays = 365): Promise<TestCa> {
  const now = Date.now();
  const rootKeys = await generateKeyPair(curve);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=Test Root ${curve}, O=${td}`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 2 * lifetimeDays * DAY),
    keys: rootKeys.keys,
    signingAlgorithm: EC[curve],
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.keys.publicKey),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }]),
    ],
  });
  const interKeys = await generateKeyPair(curve);
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: `CN=Test Intermediate ${curve}, O=${td}`,
    issuer: root.subject,
    notBefore: new Date(now - DAY / 2),
    notAfter: new Date(now + lifetimeDays * DAY),
    publicKey: interKeys.keys.publicKey,
    signingKey: rootKeys.keys.privateKey,
    signingAlgorithm: EC[curve],
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }]),
    ],
  });
  return {
    rootPem: root.toString('pem') + '\n',
    rootDer: Buffer.from(root.rawData),
    intermediatePem: inter.toString('pem') + '\n',
    intermediateDer: Buffer.from(inter.rawData),
    issuerKey: interKeys.privateKey,
    intermediate: inter,
  };
}

export interface CsrOptions {
  name?: string;
  extensions?: x509.Extension[];
  signingAlgorithm?: webcrypto.Algorithm | webcrypto.EcdsaParams;
}

/** A PKCS#10 CSR (PEM) made by @peculiar/x509. */
export async function peculiarCsr(keys: CryptoKeyPair, curveOrAlg: Curve | null, opts: CsrOptions = {}): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: opts.name ?? 'CN=workload',
    keys,
    signingAlgorithm: opts.signingAlgorithm ?? EC[curveOrAlg ?? 'p256'],
    extensions: opts.extensions ?? [],
  });
  return csr.toString('pem');
}

export function uriSan(...uris: string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })));
}

/**
 * `openssl genpkey` then `openssl req -new`; returns the CSR PEM and the key PEM. `compressedPoint` re-encodes an
 * EC key's point in compressed form first, so the CSR's SubjectPublicKeyInfo carries a compressed point.
 */
export function opensslCsr(dir: string, name: string, genkeyArgs: string[], reqArgs: string[] = [], opts: { compressedPoint?: boolean } = {}): { csr: string; key: string } {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  execFileSync('openssl', ['genpkey', ...genkeyArgs, '-out', keyFile], { stdio: 'pipe' });
  if (opts.compressedPoint) execFileSync('openssl', ['ec', '-in', keyFile, '-conv_form', 'compressed', '-out', keyFile], { stdio: 'pipe' });
  execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=workload', ...reqArgs, '-out', csrFile], { stdio: 'pipe' });
  return { csr: readFileSync(csrFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

export const OPENSSL_EC: Record<Curve, string[]> = {
  p256: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
};

/** Runs `openssl verify` of `leafPem` against the CA; returns its output, throws (with it) on failure. */
export function opensslVerify(dir: string, ca: TestCa, leafPem: string, name = 'leaf', extraArgs: string[] = []): string {
  const files = { root: join(dir, 'root.pem'), inter: join(dir, 'intermediate.pem'), leaf: join(dir, `${name}.pem`) };
  writeFileSync(files.root, ca.rootPem);
  writeFileSync(files.inter, ca.intermediatePem);
  writeFileSync(files.leaf, leafPem);
  try {
    return execFileSync('openssl', ['verify', ...extraArgs, '-CAfile', files.root, '-untrusted', files.inter, files.leaf], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    throw new Error(`openssl verify failed: ${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

export { x509 };

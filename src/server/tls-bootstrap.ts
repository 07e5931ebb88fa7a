import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
type KeyPair = webcrypto.CryptoKeyPair;

export interface ServerTls {
  cert: string;
  key: string;
  /** The CA that clients should trust (AEGIS_CACERT), when Aegis made the certificate itself. */
  caFile: string | null;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const RENEW_BEFORE_MS = 30 * 86400 * 1000;

/**
 * The API's TLS identity. Given files, they are used as they are. Otherwise Aegis makes a private CA and a server
 * certificate the first time the data directory is used, and again when the certificate nears expiry. The CA's
 * key is discarded at once: it signs this one certificate and nothing else. The server's key is a file (0600)
 * because a sealed server must still speak TLS to be unsealed.
 */
export async function serverTls(opts: { dataDir: string; certFile: string | null; keyFile: string | null; names: string[] }): Promise<ServerTls> {
  if (opts.certFile && opts.keyFile) {
    return { cert: readFileSync(opts.certFile, 'utf8'), key: readFileSync(opts.keyFile, 'utf8'), caFile: null };
  }
  const dir = join(opts.dataDir, 'tls');
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server-key.pem') };
  const names = [...new Set(['localhost', hostname(), '127.0.0.1', '::1', ...opts.names])];
  if (existsSync(files.cert) && existsSync(files.key) && existsSync(files.ca) && stillGood(readFileSync(files.cert, 'utf8'), names)) {
    return { cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8'), caFile: files.ca };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const made = await makeServerCertificate(names);
  // Write to temporary names then rename, so a crash never leaves a key without its certificate.
  writeFileSync(`${files.key}.tmp`, made.key, { mode: 0o600 });
  writeFileSync(`${files.cert}.tmp`, made.cert, { mode: 0o644 });
  writeFileSync(`${files.ca}.tmp`, made.ca, { mode: 0o644 });
  renameSync(`${files.key}.tmp`, files.key);
  renameSync(`${files.cert}.tmp`, files.cert);
  renameSync(`${files.ca}.tmp`, files.ca);
  return { cert: made.cert, key: made.key, caFile: files.ca };
}

function stillGood(pem: string, names: string[]): boolean {
  try {
    const cert = new x509.X509Certificate(pem);
    if (cert.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) return false;
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const have = new Set(san?.names.items.map((n) => n.value) ?? []);
    return names.every((n) => have.has(n));
  } catch {
    return false;
  }
}

export async function makeServerCertificate(names: string[]): Promise<{ ca: string; cert: string; key: string }> {
  const now = Date.now();
  const caKeys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as KeyPair;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=Aegis API CA ${hostname()}`,
    keys: caKeys,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 2 * 365 * 86400 * 1000),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as KeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    subject: 'CN=aegis',
    issuer: ca.subject,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 86400 * 1000),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names.map((n) => ({ type: isIP(n) ? 'ip' as const : 'dns' as const, value: n }))),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { ca: ca.toString('pem') + '\n', cert: cert.toString('pem') + '\n', key: keyPem };
}

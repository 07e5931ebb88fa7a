import { webcrypto } from 'node:crypto';
import { x509 } from './ca-certs.js';
import { toPem } from './pem.js';

/** A fresh workload key pair and a CSR for it, made where the workload runs: the private key never leaves. */
export async function makeKeyAndCsr(keyType: 'p256' | 'p384' = 'p256'): Promise<{ keyPkcs8: Buffer; keyPem: string; csrPem: string }> {
  const alg = keyType === 'p384' ? { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  // The subject is not used (the server takes the identity from attestation), so the CSR carries none.
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: alg });
  const keyPkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { keyPkcs8, keyPem: toPem(keyPkcs8, 'PRIVATE KEY'), csrPem: csr.toString('pem') };
}

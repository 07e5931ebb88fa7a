import { x509 } from './ca-certs.js';

/** PEM armour (RFC 7468) for DER bytes. */
export function toPem(der: Buffer | Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** The DER blocks of a PEM text, in order (certificates, keys, CRLs). */
export function fromPem(text: string): Buffer[] {
  return x509.PemConverter.decode(text).map((b) => Buffer.from(b));
}

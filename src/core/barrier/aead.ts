import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

// AES-256-GCM with a fresh random 96-bit nonce per message (NIST SP 800-38D §8.2.2). Layout of a sealed value:
//   [format 1 byte = 0x01][term uint32 BE][nonce 12][ciphertext][tag 16]
// The 5-byte header and the caller's context (the storage path) are both authenticated, so a value copied to
// another path, or relabelled with another term, fails to open.
const FORMAT = 0x01;
const HEADER = 5;
const NONCE = 12;
const TAG = 16;

export class DecryptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecryptError';
  }
}

export function sealValue(key: Buffer, term: number, context: string, plaintext: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER + NONCE + plaintext.length + TAG);
  out[0] = FORMAT;
  out.writeUInt32BE(term, 1);
  const nonce = randomBytes(NONCE);
  nonce.copy(out, HEADER);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad(out.subarray(0, HEADER), context));
  const n = cipher.update(plaintext).copy(out, HEADER + NONCE);
  cipher.final();
  cipher.getAuthTag().copy(out, HEADER + NONCE + n);
  return out;
}

/** The key term a sealed value was written with (so the keyring can pick the key). */
export function termOf(sealed: Buffer): number {
  if (sealed.length < HEADER + NONCE + TAG || sealed[0] !== FORMAT) throw new DecryptError('not a sealed value');
  return sealed.readUInt32BE(1);
}

export function openValue(key: Buffer, context: string, sealed: Buffer): Buffer {
  termOf(sealed);
  const nonce = sealed.subarray(HEADER, HEADER + NONCE);
  const tag = sealed.subarray(sealed.length - TAG);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(aad(sealed.subarray(0, HEADER), context));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(sealed.subarray(HEADER + NONCE, sealed.length - TAG)), decipher.final()]);
  } catch {
    throw new DecryptError(`value at ${context} failed authentication: it was altered, moved from another path, or sealed with another key`);
  }
}

function aad(header: Buffer, context: string): Buffer {
  return Buffer.concat([header, Buffer.from(context, 'utf8')]);
}

import { randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { openValue, sealValue } from '../barrier/aead.js';
import type { AutoUnseal } from './auto-unseal.js';

const CONTEXT = 'seal/root-key';

/** Auto-unseal with a 256-bit key kept in a file outside the data (base64 or hex). For automation. */
export class KeyFileUnseal implements AutoUnseal {
  readonly type = 'file';
  private readonly key: Buffer;

  constructor(readonly path: string) {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0 && process.platform !== 'win32') {
      throw new Error(`unseal key file ${path} is readable by group or others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it`);
    }
    const text = readFileSync(path, 'utf8').trim();
    const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
    if (key.length !== 32) throw new Error(`unseal key file ${path} must hold a 256-bit key as 64 hex or 44 base64 characters`);
    this.key = key;
  }

  /** Writes a new random key file (mode 0600); refuses to overwrite one. */
  static generate(path: string): void {
    writeFileSync(path, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  }

  async wrap(rootKey: Buffer): Promise<Buffer> {
    return sealValue(this.key, 0, CONTEXT, rootKey);
  }

  async unwrap(wrapped: Buffer): Promise<Buffer> {
    return openValue(this.key, CONTEXT, wrapped);
  }
}

import { randomBytes } from 'node:crypto';
import { DecryptError, openValue, sealValue, termOf } from './aead.js';

export interface KeyTerm {
  term: number;
  key: Buffer;
  installedAt: string;
}

// The keyring's own storage context: it is sealed by the root key, never by one of its terms.
export const KEYRING_CONTEXT = 'seal/keyring';

/**
 * Numbered data keys. New values are sealed with the newest term; older terms stay to open older values,
 * so rotation never re-encrypts anything.
 */
export class Keyring {
  private constructor(private readonly terms: Map<number, KeyTerm>, private active: number) {}

  static create(): Keyring {
    const first: KeyTerm = { term: 1, key: randomBytes(32), installedAt: new Date().toISOString() };
    return new Keyring(new Map([[1, first]]), 1);
  }

  get activeTerm(): KeyTerm {
    return this.terms.get(this.active)!;
  }

  get termCount(): number {
    return this.terms.size;
  }

  rotate(): KeyTerm {
    const next: KeyTerm = { term: this.active + 1, key: randomBytes(32), installedAt: new Date().toISOString() };
    this.terms.set(next.term, next);
    this.active = next.term;
    return next;
  }

  seal(context: string, plaintext: Buffer): Buffer {
    const t = this.activeTerm;
    return sealValue(t.key, t.term, context, plaintext);
  }

  open(context: string, sealed: Buffer): Buffer {
    const term = this.terms.get(termOf(sealed));
    if (!term) throw new DecryptError(`value at ${context} was sealed with unknown key term ${termOf(sealed)}`);
    return openValue(term.key, context, sealed);
  }

  /** The keyring sealed under the root key, for storage. */
  sealWith(rootKey: Buffer): Buffer {
    const doc = {
      active: this.active,
      terms: [...this.terms.values()].map((t) => ({ term: t.term, key: t.key.toString('base64'), installedAt: t.installedAt })),
    };
    return sealValue(rootKey, 0, KEYRING_CONTEXT, Buffer.from(JSON.stringify(doc)));
  }

  static openWith(rootKey: Buffer, sealed: Buffer): Keyring {
    const doc = JSON.parse(openValue(rootKey, KEYRING_CONTEXT, sealed).toString('utf8')) as {
      active: number; terms: { term: number; key: string; installedAt: string }[];
    };
    const terms = new Map(doc.terms.map((t) => [t.term, { term: t.term, key: Buffer.from(t.key, 'base64'), installedAt: t.installedAt }]));
    return new Keyring(terms, doc.active);
  }

  /** Overwrites key bytes in memory (best effort: the GC may hold copies). */
  wipe(): void {
    for (const t of this.terms.values()) t.key.fill(0);
    this.terms.clear();
  }
}

import { combine, split } from 'shamir-secret-sharing';

// Shamir's secret sharing of the root key (shamir-secret-sharing, independently audited).
// With a single share the share is the key itself, as in Vault: the library needs at least two.

export async function splitRootKey(rootKey: Buffer, shares: number, threshold: number): Promise<Buffer[]> {
  if (shares === 1 && threshold === 1) return [Buffer.from(rootKey)];
  const parts = await split(new Uint8Array(rootKey), shares, threshold);
  return parts.map((p) => Buffer.from(p));
}

export async function combineShares(shares: Buffer[]): Promise<Buffer> {
  if (shares.length === 1) return Buffer.from(shares[0]!);
  return Buffer.from(await combine(shares.map((s) => new Uint8Array(s))));
}

/** Accepts a share as hex (what `operator init` prints first) or base64. */
export function decodeShare(text: string, expectedLength: number): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]+$/.test(t) && t.length === expectedLength * 2) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(t)) {
    const b = Buffer.from(t, 'base64');
    if (b.length === expectedLength) return b;
  }
  return null;
}

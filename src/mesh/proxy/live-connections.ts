import type { EventReason, ProxyCredentials } from './types.js';
import type { PeerVerifier, VerifiedPeer } from './peer-verifier.js';

// What the tcp and http inbound listeners share: their TLS context options, and their live connections — totals,
// closing those of one identity, re-checking them all after a revocation or policy change. Each listener keeps its
// own set and its own `cut`.

export interface LiveWithPeer {
  peer: VerifiedPeer;
}

/** The context options: built once per credential set (setSecureContext builds one SecureContext from them). */
export function contextOptions(c: ProxyCredentials) {
  // minVersion belongs to the context: setSecureContext without it would fall back to Node's default (TLS 1.2).
  return { key: c.keyPem, cert: c.certChainPem, ca: c.bundlePem, minVersion: 'TLSv1.3' as const };
}

/** `address:port` of a socket's peer, as events name it. */
export function remote(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

/** Totals of closed connections plus what the live ones carried so far. */
export function withLiveBytes<T extends { bytesIn: number; bytesOut: number }>(counts: T, live: Iterable<{ bytesIn: number; bytesOut: number }>, active: number): T & { active: number } {
  let { bytesIn, bytesOut } = counts;
  for (const c of live) {
    bytesIn += c.bytesIn;
    bytesOut += c.bytesOut;
  }
  return { ...counts, active, bytesIn, bytesOut };
}

export type Cut<C> = (c: C, reason: EventReason, detail: string) => void;

/** Default deny: anything but a resolved `true` (a throw, a rejection, a non-boolean) is a no. */
export async function decide(f: () => boolean | Promise<boolean>): Promise<boolean> {
  try {
    return (await f()) === true;
  } catch {
    return false;
  }
}

/** Closes every live connection of `spiffeId`; returns how many. */
export function closeIdentity<C extends LiveWithPeer>(live: Set<C>, spiffeId: string, reason: EventReason, cut: Cut<C>): number {
  let n = 0;
  for (const c of [...live]) {
    if (c.peer.spiffeId !== spiffeId) continue;
    cut(c, reason, 'closed on request');
    n++;
  }
  return n;
}

/**
 * Closes live connections whose identity is now revoked or expired (synchronously, first), then — when `authorize`
 * is given — those it no longer admits, with one decision per identity. Returns how many were closed.
 */
export async function revalidateLive<C extends LiveWithPeer>(live: Set<C>, verifier: PeerVerifier, cut: Cut<C>,
  authorize?: (spiffeId: string) => boolean | Promise<boolean>): Promise<number> {
  let n = 0;
  for (const c of [...live]) {
    const refused = verifier.recheck(c.peer);
    if (refused) {
      cut(c, refused.reason, refused.detail);
      n++;
    }
  }
  if (!authorize) return n;
  const decisions = new Map<string, Promise<boolean>>();
  for (const c of [...live]) {
    let d = decisions.get(c.peer.spiffeId);
    if (!d) decisions.set(c.peer.spiffeId, (d = decide(() => authorize(c.peer.spiffeId))));
    if (!(await d) && live.has(c)) {
      cut(c, 'denied', 'no longer authorized');
      n++;
    }
  }
  return n;
}

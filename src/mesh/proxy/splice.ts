import type { Duplex } from 'node:stream';

/** Byte counters of one proxied connection, as seen from the side that accepted it. */
export interface ByteCounters {
  /** Read from the accepted socket (towards the other side). */
  bytesIn: number;
  /** Written to the accepted socket. */
  bytesOut: number;
}

/**
 * Joins two sockets both ways, counting bytes. An end on one side ends the other (half-close is passed on);
 * an error or an abrupt close on either side destroys both, so no connection outlives its partner.
 */
export function splice(accepted: Duplex, other: Duplex, counters: ByteCounters, onClosed?: () => void): void {
  accepted.on('data', (d: Buffer) => { counters.bytesIn += d.length; });
  other.on('data', (d: Buffer) => { counters.bytesOut += d.length; });
  accepted.pipe(other);
  other.pipe(accepted);
  let closed = false;
  const teardown = () => {
    accepted.destroy();
    other.destroy();
    if (!closed) {
      closed = true;
      onClosed?.();
    }
  };
  for (const s of [accepted, other]) {
    s.on('error', teardown);
    // 'close' after both directions ended (or after destroy): nothing more can flow.
    s.on('close', teardown);
  }
}

import { randomBytes } from 'node:crypto';
import type { SecureStore } from '../core/barrier/index.js';

// Security events: what detection rules will look at (failed attestations, refused peers, revocations).
// Kept in the barrier under `detect/events/`, keyed by time so a listing is chronological; the newest
// MAX_EVENTS are kept.

const PREFIX = 'events/';
const MAX_EVENTS = 10_000;

export interface SecurityEvent {
  type: string;
  outcome: 'success' | 'failure';
  /** Who or what the event is about (a SPIFFE ID, an attestor). */
  subject?: string;
  client_ip?: string;
  reason?: string;
  details?: Record<string, string | number | boolean>;
}

export interface StoredEvent extends SecurityEvent {
  id: string;
  time: string;
}

export class SecurityEvents {
  private count = -1;

  constructor(private readonly store: SecureStore) {}

  async record(event: SecurityEvent): Promise<StoredEvent> {
    const time = new Date();
    // Sortable: zero-padded milliseconds, then randomness against collisions within one millisecond.
    const id = `${String(time.getTime()).padStart(15, '0')}-${randomBytes(6).toString('hex')}`;
    const stored: StoredEvent = { id, time: time.toISOString(), ...event };
    await this.store.put(PREFIX + id, stored);
    if (this.count < 0) this.count = (await this.store.list(PREFIX)).length;
    else this.count += 1;
    if (this.count > MAX_EVENTS) await this.trim();
    return stored;
  }

  /** The newest `limit` events, newest first, optionally of one type. */
  async recent(limit = 100, type?: string): Promise<StoredEvent[]> {
    const keys = (await this.store.list(PREFIX)).sort().reverse();
    const out: StoredEvent[] = [];
    for (const k of keys) {
      if (out.length >= limit) break;
      const got = await this.store.get(PREFIX + k);
      if (!got) continue;
      const e = JSON.parse(got.value.toString('utf8')) as StoredEvent;
      if (!type || e.type === type) out.push(e);
    }
    return out;
  }

  private async trim(): Promise<void> {
    const keys = (await this.store.list(PREFIX)).sort();
    for (const k of keys.slice(0, keys.length - MAX_EVENTS)) await this.store.delete(PREFIX + k);
    this.count = Math.min(keys.length, MAX_EVENTS);
  }
}

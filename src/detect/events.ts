import { randomBytes } from 'node:crypto';
import type { SecureStore } from '../core/barrier/index.js';

// Security events: what detection rules will look at (failed attestations, refused peers, revocations).
// Kept in the barrier under `detect/events/`, keyed by time so a listing is chronological; the newest
// MAX_EVENTS are kept.

const PREFIX = 'events/';
const MAX_EVENTS = 10_000;
// Deletes per storage transaction when trimming (one commit per chunk rather than per key).
const TRIM_CHUNK = 500;

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

  /**
   * Several events in one storage transaction: all are kept or none is. They share one timestamp; their IDs keep
   * the given order (the index precedes the randomness), so `recent` (newest first) lists a batch last event first.
   */
  async recordMany(events: readonly SecurityEvent[]): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    // Four hex digits of index; a batch larger than what is kept could never be read back whole anyway.
    if (events.length > MAX_EVENTS) throw new RangeError(`at most ${MAX_EVENTS} events per batch, got ${events.length}`);
    const time = new Date();
    const ms = String(time.getTime()).padStart(15, '0');
    const iso = time.toISOString();
    const salt = randomBytes(4 * events.length).toString('hex');
    const stored = events.map((event, i): StoredEvent => ({
      id: `${ms}-${i.toString(16).padStart(4, '0')}${salt.slice(8 * i, 8 * i + 8)}`, time: iso, ...event,
    }));
    await this.store.txn(stored.map((e) => ({ type: 'put' as const, key: PREFIX + e.id, value: e })));
    if (this.count < 0) this.count = (await this.store.list(PREFIX)).length;
    else this.count += stored.length;
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
    const old = keys.slice(0, Math.max(0, keys.length - MAX_EVENTS));
    for (let i = 0; i < old.length; i += TRIM_CHUNK) {
      await this.store.txn(old.slice(i, i + TRIM_CHUNK).map((k) => ({ type: 'delete' as const, key: PREFIX + k })));
    }
    this.count = Math.min(keys.length, MAX_EVENTS);
  }
}

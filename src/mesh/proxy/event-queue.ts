import type { ProxyEvent } from './types.js';

// The proxy's outbox of security events (issue 6): traffic must never wait on reporting. `push` is O(1) into a
// fixed ring and never blocks or throws; when the ring is full the new event is dropped and counted (the oldest are
// kept: they are already in order and partly in flight). One flusher sends batches, one at a time, in order; a
// failed batch stays at the head of the ring and is retried with jittered exponential backoff, so an outage costs
// at most `capacity` events of memory and then only counted drops. Delivery is at least once: a batch the server
// recorded but whose answer was lost is sent again.

export interface EventQueueOptions<T> {
  /** Delivers one batch; rejects to have it retried. Must stop when `signal` aborts (send timeout, close deadline). */
  send: (batch: T[], signal: AbortSignal) => Promise<void>;
  /** Most events held (default 10,000). */
  capacity?: number;
  /** Most events per batch (default 500, the server's limit). */
  maxBatch?: number;
  /** With `sizeOf`: most bytes per batch (e.g. the server's 64 KiB less the envelope). */
  maxBatchBytes?: number;
  /** Bytes an event adds to a batch; only consulted when a batch is formed, never on push. */
  sizeOf?: (ev: T) => number;
  /** A partial batch waits at most this long (default 1,000 ms); a full one goes at once. */
  flushIntervalMs?: number;
  /** Backoff after a failed send: the first delay, doubled per consecutive failure up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A send not settled by then is aborted and counts as failed (default 30,000 ms). */
  sendTimeoutMs?: number;
  /** [0, 1); tests pin it. */
  random?: () => number;
  /** Told of each failed send (for a log line); must not throw. */
  onSendError?: (err: unknown, info: { events: number; attempt: number; retryInMs: number | null }) => void;
}

export interface EventQueueStats {
  /** Held now, including the batch in flight. */
  queued: number;
  /** Delivered. */
  sent: number;
  /** Never delivered: pushed while full or after close, or left when close() ran out of time. */
  dropped: number;
  /** Sends that failed (each retry that fails counts again). */
  failedSends: number;
  /** Events the server refused for good (BatchRejectedError): dropped from the head, not retried. */
  rejected: number;
}

/**
 * Thrown by `send` when the server refused the batch itself (a 4xx other than 408/429): retrying could only fail
 * again and would block every later event, so the batch is discarded and counted as rejected.
 */
export class BatchRejectedError extends Error {
  readonly code = 'ERR_BATCH_REJECTED';
}

export class EventQueue<T = ProxyEvent> {
  private readonly ring: (T | undefined)[];
  private head = 0;
  private length = 0;
  private readonly counts = { sent: 0, dropped: 0, failedSends: 0, rejected: 0 };
  private inFlight: Promise<void> | null = null;
  private failures = 0;
  /** The delay decided at the last failure. */
  private backoff = 0;
  private current: AbortController | null = null;
  private lastCutByBytes = false;
  private timer: NodeJS.Timeout | null = null;
  private timerDue = Infinity;
  private kicked = false;
  private closed = false;
  private readonly o: Required<Omit<EventQueueOptions<T>, 'sizeOf' | 'onSendError'>> & Pick<EventQueueOptions<T>, 'sizeOf' | 'onSendError'>;

  constructor(opts: EventQueueOptions<T>) {
    this.o = {
      capacity: 10_000, maxBatch: 500, maxBatchBytes: Infinity, flushIntervalMs: 1_000, initialBackoffMs: 500, maxBackoffMs: 30_000,
      sendTimeoutMs: 30_000, random: Math.random, ...opts,
    };
    for (const k of ['capacity', 'maxBatch'] as const) {
      if (!Number.isSafeInteger(this.o[k]) || this.o[k] < 1) throw new RangeError(`EventQueue: ${k} must be a whole number ≥ 1`);
    }
    this.ring = new Array<T | undefined>(this.o.capacity);
  }

  /** Queues one event; false when it was dropped (queue full or closed). Never blocks, never throws. */
  push(ev: T): boolean {
    if (this.closed || this.length === this.o.capacity) {
      this.counts.dropped += 1;
      return false;
    }
    this.ring[(this.head + this.length) % this.o.capacity] = ev;
    this.length += 1;
    // A full batch goes as soon as the current code yields; during backoff the retry timer decides.
    if (this.length >= this.o.maxBatch && this.failures === 0 && !this.inFlight && !this.kicked) {
      this.kicked = true;
      queueMicrotask(() => {
        this.kicked = false;
        this.flush();
      });
    } else if (this.length === 1) {
      this.schedule(this.o.flushIntervalMs);
    }
    return true;
  }

  stats(): EventQueueStats {
    return { queued: this.length, ...this.counts };
  }

  /**
   * Stops the timers and sends what is held once, batch after batch, each attempt bounded by what is left of
   * `deadlineMs`; no retries. Events still held after that are counted as dropped. Later pushes are dropped.
   */
  async close(deadlineMs = 5_000): Promise<EventQueueStats> {
    if (this.closed) return this.stats();
    this.closed = true;
    this.clearTimer();
    const end = Date.now() + deadlineMs;
    if (this.inFlight) {
      await raceDeadline(this.inFlight, end);
      // Out of time: abort it (the send settles at once) so the ring is not changed under what follows.
      if (this.inFlight) {
        this.current?.abort(new Error('the queue was closed'));
        await this.inFlight;
      }
    }
    while (this.length > 0 && Date.now() < end) {
      if (!(await this.sendHead(end - Date.now()))) break;
    }
    this.counts.dropped += this.length;
    this.removeHead(this.length);
    return this.stats();
  }

  private flush(): void {
    if (this.closed || this.inFlight || this.length === 0) return;
    this.clearTimer();
    const attempt = this.sendHead(this.o.sendTimeoutMs).then((ok) => {
      this.inFlight = null;
      if (this.closed || this.length === 0) return;
      if (!ok) {
        this.schedule(this.backoff);
        return;
      }
      // More than a batch's worth is waiting (by count, or the last batch was cut by bytes): no need to wait.
      if (this.length >= this.o.maxBatch || this.lastCutByBytes) this.flush();
      else this.schedule(this.o.flushIntervalMs);
    });
    this.inFlight = attempt;
  }

  /** Sends the batch at the head; true when it was delivered or rejected for good (the head moved on). */
  private async sendHead(timeoutMs: number): Promise<boolean> {
    const batch = this.peekBatch();
    const ac = new AbortController();
    this.current = ac;
    const timer = setTimeout(() => ac.abort(new Error(`sending ${batch.length} events: no answer within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    try {
      await Promise.race([
        Promise.resolve().then(() => this.o.send(batch, ac.signal)),
        new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true })),
      ]);
      this.removeHead(batch.length);
      this.counts.sent += batch.length;
      this.failures = 0;
      return true;
    } catch (err) {
      this.counts.failedSends += 1;
      const rejected = err instanceof BatchRejectedError;
      if (rejected) {
        this.removeHead(batch.length);
        this.counts.rejected += batch.length;
        this.failures = 0;
      } else {
        this.failures += 1;
      }
      this.report(err, batch.length, rejected || this.closed ? null : this.nextBackoff());
      return rejected;
    } finally {
      clearTimeout(timer);
      this.current = null;
    }
  }

  /** The oldest events, up to maxBatch and (with sizeOf) maxBatchBytes; at least one. Left in the ring until sent. */
  private peekBatch(): T[] {
    const n = Math.min(this.length, this.o.maxBatch);
    const batch: T[] = [];
    let bytes = 0;
    this.lastCutByBytes = false;
    for (let i = 0; i < n; i++) {
      const ev = this.ring[(this.head + i) % this.o.capacity] as T;
      if (this.o.sizeOf) {
        bytes += this.o.sizeOf(ev);
        if (bytes > this.o.maxBatchBytes && batch.length > 0) {
          this.lastCutByBytes = true;
          break;
        }
      }
      batch.push(ev);
    }
    return batch;
  }

  private removeHead(count: number): void {
    const n = Math.min(count, this.length);
    for (let i = 0; i < n; i++) this.ring[(this.head + i) % this.o.capacity] = undefined;
    this.head = (this.head + n) % this.o.capacity;
    this.length -= n;
  }

  // Decided once per failure, so the delay reported is the delay used. "Equal jitter": half fixed, half random,
  // so proxies that lost the server together do not come back together.
  private nextBackoff(): number {
    const base = Math.min(this.o.maxBackoffMs, this.o.initialBackoffMs * 2 ** Math.min(30, this.failures - 1));
    this.backoff = Math.round(base / 2 + (base / 2) * this.o.random());
    return this.backoff;
  }

  private report(err: unknown, events: number, retryInMs: number | null): void {
    try {
      this.o.onSendError?.(err, { events, attempt: this.failures, retryInMs });
    } catch {
      // A failing logger must not stop the queue.
    }
  }

  /** Runs flush in `ms` unless a flush is already due sooner. */
  private schedule(ms: number): void {
    const due = Date.now() + ms;
    if (this.timer && this.timerDue <= due) return;
    this.clearTimer();
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerDue = Infinity;
      this.flush();
    }, ms);
    // Reporting alone must not keep a proxy process alive.
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerDue = Infinity;
  }
}

async function raceDeadline(p: Promise<void>, end: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, end - Date.now())); })]);
  clearTimeout(timer);
}

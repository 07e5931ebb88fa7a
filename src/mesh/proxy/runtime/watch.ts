// One Consul-style blocking-query loop: ask with the last index seen, apply what comes back when the index moved,
// ask again. A failure (server down, 5xx, a refused read) keeps what was applied last — fail static — and retries
// with full-jitter exponential backoff, so a fleet of proxies does not reconnect in lockstep after an outage.

export interface WatchResult<T> {
  index: number;
  value: T;
}

export interface WatchOptions<T> {
  name: string;
  /** One blocking read: resolves after a change past `index` or after `waitSeconds`. */
  fetch: (index: number, waitSeconds: number) => Promise<WatchResult<T>>;
  /** Called with the first answer and with every answer whose index moved. */
  apply: (value: T, index: number) => void | Promise<void>;
  /** Every successful read (for staleness). */
  onContact?: () => void;
  onError?: (name: string, err: Error, retryInMs: number) => void;
  waitSeconds?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in [min, cap]. */
export function jitteredBackoff(attempt: number, minMs: number, maxMs: number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
  return minMs + Math.random() * (cap - minMs);
}

const POLL_MS = 500;

export class BlockingWatch<T> {
  private index = 0;
  private applied = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private firstResolve!: () => void;
  /** Resolves after the first successful apply. */
  readonly first = new Promise<void>((r) => { this.firstResolve = r; });

  constructor(private readonly o: WatchOptions<T>) {}

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  /** Stops after the read in flight (its answer is dropped); callers need not await it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
  }

  get lastIndex(): number {
    return this.index;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        const asked = Date.now();
        const r = await this.o.fetch(this.index, this.o.waitSeconds ?? 30);
        if (this.stopped) return;
        // Nothing to block on (an index of 0: the mesh has never changed) or a server that did not block: poll
        // gently instead of spinning.
        if (r.index === this.index && this.applied && Date.now() - asked < 50) await this.pause(POLL_MS);
        this.o.onContact?.();
        failures = 0;
        // An index that went backwards (server restarted on fresh storage) is taken as a change, as Consul advises.
        if (!this.applied || r.index !== this.index) {
          await this.o.apply(r.value, r.index);
          this.index = r.index < 0 ? 0 : r.index;
          if (!this.applied) {
            this.applied = true;
            this.firstResolve();
          }
        }
      } catch (err) {
        if (this.stopped) return;
        const retry = jitteredBackoff(failures++, this.o.minBackoffMs ?? 250, this.o.maxBackoffMs ?? 30_000);
        this.o.onError?.(this.o.name, err as Error, retry);
        await this.pause(retry);
      }
    }
  }

  private async pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => { clearTimeout(t); resolve(); };
    });
    this.wake = null;
  }
}

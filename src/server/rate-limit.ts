/** Per-client token buckets: `rate` requests a second on average, bursts up to `burst`. 0 disables. */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(private readonly rate: number, private readonly burst: number, private readonly now: () => number = () => performance.now()) {
    if (rate > 0) {
      // Forget idle clients so the map cannot grow without bound.
      this.sweeper = setInterval(() => this.sweep(), 60_000);
      this.sweeper.unref();
    }
  }

  get enabled(): boolean {
    return this.rate > 0;
  }

  /** True when the client may make one more request now. */
  take(client: string): boolean {
    if (this.rate <= 0) return true;
    const t = this.now();
    const b = this.buckets.get(client);
    if (!b) {
      this.buckets.set(client, { tokens: this.burst - 1, at: t });
      return true;
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.rate);
    b.at = t;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }

  private sweep(): void {
    const t = this.now();
    for (const [k, b] of this.buckets) if (b.tokens + ((t - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
  }
}

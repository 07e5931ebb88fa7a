/**
 * Bounds how many probes are in flight at once: the rest wait in FIFO order, so a burst of due checks (a restart
 * with 10,000 of them) cannot open thousands of sockets together.
 */
export class RunQueue {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`max concurrent checks must be a positive integer, got ${max}`);
  }

  /** Runs `task` when a slot is free; the slot is held until its promise settles. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active += 1;
    try {
      return await task();
    } finally {
      // Hand the slot straight to the next waiter, so `active` never dips and lets a newcomer jump the queue.
      const next = this.waiting.shift();
      if (next) next();
      else this.active -= 1;
    }
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }
}

import { MAX_OUTPUT, type CheckStatus, type CheckTarget } from '../model.js';

/** What one run of a check saw. */
export interface ProbeResult {
  status: CheckStatus;
  output: string;
}

/**
 * One run of an active check (http | tcp). A probe never rejects: every failure, including its own timeout
 * (`check.timeout`), is a `critical` result. `signal` aborts the run when the check is removed or the checker
 * stops; the result of an aborted run is discarded.
 */
export type Probe = (target: CheckTarget, signal: AbortSignal) => Promise<ProbeResult>;

/** Consul's default when a check gives none. */
export const DEFAULT_TIMEOUT_MS = 10_000;

export function probeTimeout(target: CheckTarget): number {
  const t = target.check.timeout;
  return Number.isFinite(t) && t > 0 ? t : DEFAULT_TIMEOUT_MS;
}

/** Outputs are kept to MAX_OUTPUT characters, never splitting a surrogate pair. */
export function truncateOutput(output: string): string {
  if (output.length <= MAX_OUTPUT) return output;
  const last = output.charCodeAt(MAX_OUTPUT - 1);
  const end = last >= 0xd800 && last <= 0xdbff ? MAX_OUTPUT - 1 : MAX_OUTPUT;
  return output.slice(0, end);
}

export function critical(output: string): ProbeResult {
  return { status: 'critical', output: truncateOutput(output) };
}

/**
 * Runs `attempt` with the check's timeout and the caller's abort signal; whichever of result, timeout or abort comes
 * first wins, and `cleanup` always runs once (it closes the socket).
 */
export function raceProbe(
  target: CheckTarget,
  signal: AbortSignal,
  label: string,
  attempt: (settle: (r: ProbeResult) => void) => () => void,
): Promise<ProbeResult> {
  const timeout = probeTimeout(target);
  return new Promise((resolve) => {
    let settled = false;
    let cleanup: () => void = () => undefined;
    const settle = (r: ProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      try {
        cleanup();
      } finally {
        resolve({ status: r.status, output: truncateOutput(r.output) });
      }
    };
    const onAbort = (): void => settle(critical(`${label}: cancelled`));
    const timer = setTimeout(() => settle(critical(`${label}: timed out after ${timeout} ms`)), timeout);
    timer.unref();
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const close = attempt(settle);
      if (settled) close();
      else cleanup = close;
    } catch (err) {
      settle(critical(`${label}: ${(err as Error).message}`));
    }
  });
}

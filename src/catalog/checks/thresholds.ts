import type { CheckDefinition, CheckStatus } from '../model.js';

/** Consecutive results of one check since it was (re)registered. */
export interface Streak {
  successes: number;
  failures: number;
}

/**
 * The status a check holds after one more result (Consul's StatusHandler). Passing and warning are successes: they
 * reset the failure streak; critical resets the success streak. A check turns passing from anything else only after
 * `success_before_passing` successes in a row, and critical only after `failures_before_critical` failures in a row,
 * so one failure among successes does not flip it. A warning is applied as soon as it is the result: it says the
 * service answers but is overloaded, and holding on to passing or critical would hide that.
 */
export function nextStatus(current: CheckStatus, result: CheckStatus, streak: Streak, check: CheckDefinition): CheckStatus {
  if (result === 'critical') {
    streak.failures += 1;
    streak.successes = 0;
    return streak.failures >= atLeastOne(check.failures_before_critical) ? 'critical' : current;
  }
  streak.successes += 1;
  streak.failures = 0;
  if (result === 'warning') return 'warning';
  return streak.successes >= atLeastOne(check.success_before_passing) ? 'passing' : current;
}

function atLeastOne(n: number): number {
  return Number.isFinite(n) && n >= 1 ? Math.floor(n) : 1;
}

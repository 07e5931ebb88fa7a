import { BadRequestError } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Vault's duration forms, in whole seconds: an integer number of seconds (`3600`, `"3600"`), or Go-style units
 * (`"1h30m"`, `"90s"`, `"7d"`). Fractions of a second round up.
 */
export function parseDuration(value: unknown, field = 'duration'): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new BadRequestError(`${field}: must be a non-negative number of seconds`);
    return Math.ceil(value);
  }
  if (typeof value !== 'string') throw new BadRequestError(`${field}: expected a duration such as "30m" or a number of seconds`);
  const text = value.trim();
  if (text === '') return 0;
  if (/^\d+$/.test(text)) return Number(text);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== text.length || pos === 0) throw new BadRequestError(`${field}: ${JSON.stringify(value)} is not a duration; use forms like "90s", "30m", "1h30m", "7d" or seconds`);
  if (total > 100 * 365 * 86400) throw new BadRequestError(`${field}: ${JSON.stringify(value)} is longer than 100 years`);
  return Math.ceil(total);
}

/** Formats seconds as Go's time.Duration does, which is what Vault returns (`1h0m0s`, `1m30s`, `45s`, `0s`). */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

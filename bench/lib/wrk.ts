import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Call, LoadResult, LoadTarget } from './load.js';
import { round, runLoad } from './load.js';

export function hasWrk(): boolean {
  return spawnSync('wrk', ['--version']).error === undefined;
}

/**
 * Closed-loop load with wrk (C, HdrHistogram latencies) when it is installed — it leaves the second core to
 * the server instead of spending it on a JavaScript client — otherwise with the Node generator. `calls` is a
 * fixed list cycled through (wrk cannot run JS per request).
 */
export async function load(target: LoadTarget, seconds: number, calls: Call[]): Promise<LoadResult & { generator: string }> {
  if (!hasWrk()) return { ...(await runLoad(target, seconds, (i) => calls[i % calls.length]!)), generator: 'node' };
  const dir = mkdtempSync(join(tmpdir(), 'aegis-wrk-'));
  try {
    const lua = `
local calls = ${toLua(calls)}
local n = 0
request = function()
  n = n + 1
  local c = calls[(n % #calls) + 1]
  return wrk.format(c.method, c.path, c.headers, c.body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;
    const script = join(dir, 'load.lua');
    writeFileSync(script, lua);
    const threads = 1;
    const r = spawnSync('wrk', ['-t', String(threads), '-c', String(target.clients), '-d', `${seconds}s`, '--timeout', '10s', '-s', script, target.base.origin], { encoding: 'utf8' });
    const m = /WRKJSON (\{.*\})/.exec(r.stdout);
    if (!m) throw new Error(`wrk failed: ${r.stderr || r.stdout}`);
    const w = JSON.parse(m[1]!) as { requests: number; duration_us: number; errors: number; p50_us: number; p99_us: number; max_us: number };
    const s = w.duration_us / 1e6;
    const ok = w.requests - w.errors;
    return {
      ops: ok, errors: w.errors, seconds: round(s, 2), ops_per_s: round(ok / s, 0),
      p50_ms: round(w.p50_us / 1000, 3), p99_ms: round(w.p99_us / 1000, 3), max_ms: round(w.max_us / 1000, 3), generator: 'wrk',
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function toLua(calls: Call[]): string {
  const str = (s: string) => JSON.stringify(s);
  return `{${calls.map((c) => `{method=${str(c.method)},path=${str(c.path)},headers={${Object.entries({ ...c.headers, ...(c.body ? { 'content-type': 'application/json' } : {}) }).map(([k, v]) => `[${str(k)}]=${str(v)}`).join(',')}},body=${c.body === undefined ? 'nil' : str(c.body)}}`).join(',\n')}}`;
}

import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';

export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  ops_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

export interface LoadTarget {
  base: URL;
  ca?: string;
  clients: number;
}

export interface Call {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Closed-loop load: `clients` concurrent workers over keep-alive connections, each sending its next request as
 * soon as the previous answer arrives, for `seconds`. Bounded in time; a request counts only when its status is
 * 2xx (anything else is an error).
 */
export async function runLoad(target: LoadTarget, seconds: number, next: (i: number) => Call): Promise<LoadResult> {
  const https = target.base.protocol === 'https:';
  const agent = https
    ? new HttpsAgent({ keepAlive: true, maxSockets: target.clients, ca: target.ca })
    : new HttpAgent({ keepAlive: true, maxSockets: target.clients });
  const send = https ? httpsRequest : httpRequest;
  const latencies: number[] = [];
  let errors = 0;
  let seq = 0;
  const deadline = performance.now() + seconds * 1000;
  const once = (call: Call) =>
    new Promise<number>((resolve) => {
      const headers: Record<string, string> = { ...call.headers };
      if (call.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        headers['content-length'] = String(Buffer.byteLength(call.body));
      }
      const req = send(new URL(call.path, target.base), { method: call.method, headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', () => resolve(0));
      req.end(call.body);
    });
  const worker = async () => {
    while (performance.now() < deadline) {
      const call = next(seq++);
      const t0 = performance.now();
      const status = await once(call);
      const ms = performance.now() - t0;
      if (status >= 200 && status < 300) latencies.push(ms);
      else errors++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: target.clients }, worker));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : NaN);
  return {
    ops: latencies.length, errors, seconds: round(elapsed, 2), ops_per_s: round(latencies.length / elapsed, 0),
    p50_ms: round(q(0.5), 3), p99_ms: round(q(0.99), 3), max_ms: round(latencies[latencies.length - 1] ?? NaN, 3),
  };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

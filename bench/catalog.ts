// The service catalog at scale, over HTTPS with the file audit device on:
// 1. register SERVICES services × INSTANCES instances (default 10,000 × 10);
// 2. `health/service/:name?passing` from 32 keep-alive clients for 10 s (p50/p99), and in the same run the same
//    clients on the unauthenticated `sys/health` (the HTTP + TLS floor on this machine: the anchor);
// 3. WATCHERS concurrent blocking queries on distinct services (default 1,000), one change each, and the time from
//    sending each change to its watcher's answer (p50/p99/max); a watcher answering before its change is counted;
// 4. the server's RSS at the end.
// Prints one JSON line. Targets on this machine: query p99 <= 5 ms; every watcher within 100 ms; RSS <= 1 GiB.
// Flags: --services N, --instances N, --watchers N, --seconds N, --clients N.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { flag } from './lib/args.js';
import { round } from './lib/load.js';
import { startBenchServer } from './lib/aegis-server.js';
import { load } from './lib/wrk.js';

const SERVICES = flag('services', 10_000);
const INSTANCES = flag('instances', 10);
const WATCHERS = Math.min(flag('watchers', 1000), SERVICES);
const SECONDS = flag('seconds', 10);
const CLIENTS = flag('clients', 32);
const REGISTER_CONCURRENCY = 64;

const { server, api, rootToken, stop } = await startBenchServer('catalog');

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function pool<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

const svc = (i: number) => `svc-${i}`;
const instanceBody = (i: number, j: number) => ({ address: `10.${(i >> 8) & 255}.${i & 255}.${j + 1}`, port: 8000 + j, tags: ['v1'] });

try {
  // 1. Registration.
  const jobs = Array.from({ length: SERVICES * INSTANCES }, (_, k) => [Math.floor(k / INSTANCES), k % INSTANCES] as const);
  const t0 = performance.now();
  await pool(jobs, REGISTER_CONCURRENCY, async ([i, j]) => {
    await api.ok('PUT', `catalog/service/default/${svc(i)}/${svc(i)}-${j}`, { body: instanceBody(i, j) });
  });
  const registerSeconds = (performance.now() - t0) / 1000;

  // 2. Queries, and the HTTP floor in the same run.
  const headers = { 'x-vault-token': rootToken };
  const target = { base: server.address, ca: server.ca, clients: CLIENTS };
  const queryCalls = Array.from({ length: 1000 }, (_, k) => ({ method: 'GET', path: `/v1/health/service/default/${svc((k * 7919) % SERVICES)}?passing`, headers }));
  await load(target, 2, queryCalls);
  const queries = await load(target, SECONDS, queryCalls);
  const floor = await load(target, Math.min(SECONDS, 5), [{ method: 'GET', path: '/v1/sys/health', headers: {} }]);

  // 3. Watchers: each blocks on its own service at that service's current index.
  const agent = new Agent({ keepAlive: true, maxSockets: WATCHERS + 16, ca: server.ca });
  const get = (path: string) => new Promise<{ status: number; index: number; at: number }>((resolve, reject) => {
    const req = request(new URL(`/v1/${path}`, server.address), { method: 'GET', agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, index: Number(res.headers['x-aegis-index'] ?? 0), at: performance.now() }));
    });
    req.on('error', reject);
    req.end();
  });
  const watched = Array.from({ length: WATCHERS }, (_, k) => Math.floor((k * SERVICES) / WATCHERS));
  const start = new Map<number, number>();
  for (const i of watched) start.set(i, (await get(`health/service/default/${svc(i)}`)).index);
  const sentAt = new Map<number, number>();
  let early = 0;
  const answers = watched.map((i) => get(`health/service/default/${svc(i)}?index=${start.get(i)}&wait=120s`).then((r) => {
    if (!sentAt.has(i)) early++;
    return { i, ...r };
  }));
  // Let every watcher reach the server and park (1,000 TLS handshakes first).
  await new Promise((r) => setTimeout(r, 3000 + WATCHERS * 5));
  // Changes go out a few at a time, so "sent" is close to "committed" (each write waits for its fsync).
  await pool(watched, 4, async (i) => {
    sentAt.set(i, performance.now());
    await api.ok('PUT', `catalog/service/default/${svc(i)}/${svc(i)}-extra`, { body: instanceBody(i, INSTANCES) });
  });
  const results = await Promise.all(answers);
  const latencies = results.map((r) => r.at - (sentAt.get(r.i) ?? r.at)).sort((a, b) => a - b);
  const moved = results.filter((r) => r.index > start.get(r.i)!).length;
  agent.destroy();

  // 4. Memory.
  const status = readFileSync(`/proc/${server.proc.pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);

  const line = {
    bench: 'catalog',
    transport: 'https (TLS 1.3, keep-alive)',
    audit: 'file device on',
    services: SERVICES,
    instances_per_service: INSTANCES,
    register: { instances: SERVICES * INSTANCES, seconds: round(registerSeconds, 1), per_s: round((SERVICES * INSTANCES) / registerSeconds, 0) },
    query_passing: queries,
    anchor: { sys_health_same_clients: floor },
    watchers: {
      count: WATCHERS, returned_with_new_index: moved, answered_before_their_change: early,
      ms_from_change_sent: { p50: round(percentile(latencies, 50), 1), p99: round(percentile(latencies, 99), 1), max: round(latencies[latencies.length - 1] ?? 0, 1) },
    },
    server_rss_mib: round(rssKb / 1024, 0),
    targets: { query_p99_ms: 5, watcher_max_ms: 100, rss_mib: 1024 },
    targets_met: {
      query_p99: queries.p99_ms <= 5,
      watchers: (latencies[latencies.length - 1] ?? Infinity) <= 100 && early === 0 && moved === WATCHERS,
      rss: rssKb / 1024 <= 1024,
    },
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await stop();
}

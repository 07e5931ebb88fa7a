// Where a KV read's memory goes. Starts a server in this process, loads it with wrk (32 connections, HTTPS, file
// audit device on), and prints CPU µs and scavenges per request; with --profile also the KB allocated per request
// by call site (V8's sampling heap profiler, counting objects the GC already collected). Allocation per request
// does not depend on how busy the machine is, unlike throughput, so it is the steadier figure to optimize.
//   node --import tsx scripts/alloc-profile.ts [--profile] [--seconds N]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { ApiClient } from '../src/cli/client.js';
import { defaultConfig } from '../src/server/config.js';
import { startServer } from '../src/server/server.js';
import { createLogger } from '../src/telemetry/index.js';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 5;
const dir = mkdtempSync(join(tmpdir(), 'aegis-alloc-'));
const cfg = defaultConfig(dir);
cfg.listener.address = '127.0.0.1:0';
cfg.rateLimit = { perSecond: 0, burst: 1 };
const server = await startServer(cfg, createLogger('silent'));
const init = await server.core.initialize(1, 1);
await server.core.submitUnsealKey(init.keys[0]!.toString('hex'));
const api = new ApiClient({ address: server.address, token: init.rootToken, caCert: server.caFile });
await api.ok('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: join(dir, 'audit.log') } } });
const value = { username: 'app', password: 'x'.repeat(48), url: 'postgres://db.internal:5432/app' };
for (let i = 0; i < 1000; i++) await api.ok('PUT', `secret/data/bench/k${i}`, { body: { data: value } });

const lua = join(dir, 'load.lua');
writeFileSync(lua, `local n = 0
request = function() n = n + 1 return wrk.format("GET", "/v1/secret/data/bench/k" .. (n % 1000), {["x-vault-token"] = "${init.rootToken}"}) end
done = function(s) io.write("REQUESTS " .. s.requests .. "\\n") end
`);
const load = (secs: number) => new Promise<number>((resolve, reject) => {
  const p = spawn('wrk', ['-t1', '-c32', `-d${secs}s`, '-s', lua, server.address]);
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.on('error', () => reject(new Error('wrk is needed: apt-get install wrk')));
  p.on('close', () => resolve(Number(/REQUESTS (\d+)/.exec(out)?.[1] ?? 0)));
});

await load(3); // JIT warm-up
let scavenges = 0;
let scavengeMs = 0;
let major = 0;
const gc = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if ((e as { detail?: { kind?: number } }).detail?.kind === 1) {
      scavenges++;
      scavengeMs += e.duration;
    } else major++;
  }
});
gc.observe({ entryTypes: ['gc'] });
const session = new Session();
session.connect();
const profile = process.argv.includes('--profile');
if (profile) {
  await session.post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
}
const cpu0 = process.cpuUsage();
const requests = await load(seconds);
const cpu = process.cpuUsage(cpu0);
gc.disconnect();
const line: Record<string, unknown> = {
  requests, cpu_us_per_request: Math.round((cpu.user + cpu.system) / requests),
  scavenges_per_1k_requests: +((scavenges * 1000) / requests).toFixed(2), scavenge_ms_avg: +(scavengeMs / Math.max(1, scavenges)).toFixed(2), major_gcs: major,
};
if (profile) {
  type Node = { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Node[] };
  const { profile: p } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: Node } };
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (n: Node) => {
    const site = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*\/(node_modules\/)?/, '')}:${n.callFrame.lineNumber + 1}`;
    total += n.selfSize;
    bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
    n.children.forEach(walk);
  };
  walk(p.head);
  line.kb_allocated_per_request = +(total / requests / 1024).toFixed(1);
  line.top_allocation_sites = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([site, bytes]) => `${((bytes / total) * 100).toFixed(1)}% ${site}`);
}
process.stdout.write(`${JSON.stringify(line, null, profile ? 2 : 0)}\n`);
session.disconnect();
await server.close();
rmSync(dir, { recursive: true, force: true });

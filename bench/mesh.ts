// The mesh data plane against a mature proxy, in one run (tcp mode), with Debian's wrk and a small upstream app:
//   direct   wrk → app
//   aegis    wrk → `aegis proxy` web (upstream listener) → mTLS → `aegis proxy` api (inbound) → app
//            (real proxy processes against `aegis dev --tls`, with `allow web api`)
//   haproxy  wrk → haproxy (tcp, server ssl verify required, client SVID) → mTLS → haproxy (bind ssl verify
//            required) → app, with SVIDs for the same two services from the same dev server's CA
// Scenarios: keep-alive small responses; keep-alive 1 MiB bodies (MB/s too); one new connection per request
// (`Connection: close`, so every request pays a full mTLS handshake on each hop). One JSON line per scenario:
// req/s, p50, p99 per path, ratios to direct and to HAProxy, added p50/p99 vs direct, and target_met
// (Aegis ≥ HAProxy's req/s and ≤ HAProxy's added p99).
// Flags: --seconds N (10), --clients N (32, keep-alive small), --big-clients N (8), --close-clients N (16),
// --warmup N (2 s per path), --haproxy-threads N (1: one event loop per proxy, like each Node proxy),
// --only small,big,close.
// BENCH_PROXY_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") is passed to both `aegis proxy` processes.
// Needs haproxy and wrk (apt-get install haproxy wrk). Not part of CI.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/cli/client.js';
import { makeKeyAndCsr } from '../src/identity/csr-make.js';
import { flag } from './lib/args.js';
import { round, type LoadResult } from './lib/load.js';
import {
  APP_SOURCE, commandExists, freePort, haproxyConfigs, killAllNow, refusesWithoutClientCert, spawnChild, stopAll, waitHttp200, waitOutput, type Child,
} from './lib/mesh-procs.js';
import { ROOT } from './lib/server-process.js';
import { load } from './lib/wrk.js';

if (!commandExists('haproxy', '-v')) {
  process.stderr.write('mesh bench: haproxy is not installed (the comparison needs it): apt-get install haproxy\n');
  process.exit(2);
}
if (!commandExists('wrk', '--version')) {
  process.stderr.write('mesh bench: wrk is not installed (the load generator): apt-get install wrk\n');
  process.exit(2);
}

const SECONDS = flag('seconds', 10);
const WARMUP = flag('warmup', 2);
const CLIENTS = flag('clients', 32);
const BIG_CLIENTS = flag('big-clients', 8);
const CLOSE_CLIENTS = flag('close-clients', 16);
const HAPROXY_THREADS = flag('haproxy-threads', 1);
const onlyAt = process.argv.indexOf('--only');
const ONLY = onlyAt === -1 ? null : new Set((process.argv[onlyAt + 1] ?? '').split(','));
const BIN = join(ROOT, 'bin/aegis.js');
const ROOT_TOKEN = 'mesh-bench-root';

interface Scenario {
  key: string;
  name: string;
  path: string;
  clients: number;
  headers: Record<string, string>;
  bodyBytes: number;
}
const allScenarios: Scenario[] = [
  { key: 'small', name: 'keepalive-small', path: '/', clients: CLIENTS, headers: {}, bodyBytes: 19 },
  { key: 'big', name: 'keepalive-1mib', path: '/big', clients: BIG_CLIENTS, headers: {}, bodyBytes: 1 << 20 },
  { key: 'close', name: 'new-connection-per-request', path: '/', clients: CLOSE_CLIENTS, headers: { connection: 'close' }, bodyBytes: 19 },
];
const scenarios = allScenarios.filter((s) => !ONLY || ONLY.has(s.key));

// Everything is bounded: setup, every load run (wrk -d plus its 10 s timeout), and teardown.
const budgetMs = 180_000 + scenarios.length * 3 * (SECONDS + WARMUP + 15) * 1000;
const watchdog = setTimeout(() => {
  process.stderr.write(`mesh bench: still running after ${Math.round(budgetMs / 1000)} s; stopping everything\n`);
  void stopAll().finally(() => process.exit(1));
}, budgetMs);
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => void stopAll().finally(() => process.exit(130)));
}

const dir = mkdtempSync(join(tmpdir(), 'aegis-bench-mesh-'));
const proxyNodeArgs = (process.env.BENCH_PROXY_NODE_ARGS ?? '').split(' ').filter(Boolean);

async function startApp(): Promise<number> {
  const app = spawnChild('upstream app', process.execPath, ['--input-type=module', '-e', APP_SOURCE]);
  return Number((await waitOutput(app, /app: (\d+)\n/, 10_000))[1]);
}

async function startDev(): Promise<{ api: ApiClient; env: NodeJS.ProcessEnv; address: string; caFile: string }> {
  const dev = spawnChild('aegis dev --tls', process.execPath,
    [BIN, 'dev', '--tls', '--listen', '127.0.0.1:0', '--root-token', ROOT_TOKEN, '--data-dir', join(dir, 'dev'), '--log-level', 'warn', '--dns-listen', 'off'],
    { cwd: ROOT });
  const address = (await waitOutput(dev, /Address:\s+(https:\/\/\S+)/))[1]!;
  const caFile = (await waitOutput(dev, /TLS CA:\s+(\S+)/))[1]!;
  await waitOutput(dev, /audit verify \S+\n/);
  return { api: new ApiClient({ address, caCert: caFile, token: ROOT_TOKEN }), env: { AEGIS_ADDR: address, AEGIS_CACERT: caFile, AEGIS_TOKEN: ROOT_TOKEN }, address, caFile };
}

async function joinToken(api: ApiClient, service: string): Promise<string> {
  return ((await api.ok('POST', 'identity/join-token', { body: { service } })).body as { data: { token: string } }).data.token;
}

/** The Aegis pair: `aegis proxy` for web (an upstream listener for api) and for api (inbound → app). */
async function startAegisPair(api: ApiClient, env: NodeJS.ProcessEnv, appPort: number): Promise<number> {
  const proxy = async (service: string, upstream: boolean): Promise<Child> => {
    const args = [...proxyNodeArgs, BIN, 'proxy', '--service', service, '--listen', '127.0.0.1:0', '--app', `127.0.0.1:${appPort}`,
      '--join-token', await joinToken(api, service), '--log-level', 'warn'];
    if (upstream) args.push('--upstream', 'api=127.0.0.1:0');
    const p = spawnChild(`aegis proxy --service ${service}`, process.execPath, args, { env, cwd: ROOT });
    await waitOutput(p, upstream ? /upstream default\/api: \d+\n/ : /inbound: \d+\n/);
    return p;
  };
  await api.ok('PUT', 'mesh/intentions/default/web/default/api', { body: { action: 'allow' } });
  const [web] = await Promise.all([proxy('web', true), proxy('api', false)]);
  const port = Number(/upstream default\/api: (\d+)/.exec(web.out())![1]);
  // web finds api's sidecar in the catalog and api loads the allow: until both, connections are closed.
  await waitHttp200(port, 'the aegis pair', 20_000);
  return port;
}

/** SVIDs for web (client) and api (server) attested at the dev server, written as HAProxy PEM files. */
async function haproxyFiles(api: ApiClient, address: string, caFile: string): Promise<{ clientPem: string; serverPem: string; bundle: string }> {
  const anon = new ApiClient({ address, caCert: caFile, token: null });
  const svid = async (service: string) => {
    const { keyPem, csrPem } = await makeKeyAndCsr('p256');
    const res = await anon.ok('POST', 'identity/attest/join-token', {
      body: { join_token: await joinToken(api, service), csr: csrPem, namespace: 'default', service }, auth: false,
    });
    const d = (res.body as { data: { certificate: string; ca_chain: string[]; bundle: string } }).data;
    return { pem: [d.certificate, ...d.ca_chain].map((p) => p.trim()).join('\n') + '\n' + keyPem.trim() + '\n', bundle: d.bundle };
  };
  const [web, apiSvid] = await Promise.all([svid('web'), svid('api')]);
  const files = { clientPem: join(dir, 'web.pem'), serverPem: join(dir, 'api.pem'), bundle: join(dir, 'bundle.pem') };
  writeFileSync(files.clientPem, web.pem, { mode: 0o600 });
  writeFileSync(files.serverPem, apiSvid.pem, { mode: 0o600 });
  writeFileSync(files.bundle, web.bundle);
  return files;
}

async function startHaproxyPair(files: { clientPem: string; serverPem: string; bundle: string }, appPort: number): Promise<number> {
  const ports = { outbound: await freePort(), inbound: await freePort(), app: appPort };
  const cfg = haproxyConfigs(files, ports, HAPROXY_THREADS);
  const procs: Child[] = [];
  for (const side of ['inbound', 'outbound'] as const) {
    const file = join(dir, `haproxy-${side}.cfg`);
    writeFileSync(file, cfg[side]);
    const check = spawnChild(`haproxy -c (${side})`, 'haproxy', ['-c', '-q', '-f', file]);
    await new Promise<void>((ok, fail) => check.proc.once('exit', (c) => (c === 0 ? ok() : fail(new Error(`haproxy rejected ${file}:\n${check.err()}`)))));
    // Foreground (-db), never the system service.
    procs.push(spawnChild(`haproxy ${side}`, 'haproxy', ['-db', '-f', file]));
  }
  try {
    await waitHttp200(ports.outbound, 'the haproxy pair');
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${procs.map((p) => `${p.name}: ${p.err().slice(-2000)}`).join('\n')}`);
  }
  // The hop really is mutual: without a client certificate the inbound haproxy gives nothing.
  if (!(await refusesWithoutClientCert(ports.inbound, readFileSync(files.bundle, 'utf8')))) {
    throw new Error('the inbound haproxy answered a TLS client without a certificate: verify required is not in effect');
  }
  return ports.outbound;
}

type Run = LoadResult & { generator: string; mb_per_s?: number };

async function measure(port: number, s: Scenario): Promise<Run> {
  const target = { base: new URL(`http://127.0.0.1:${port}`), clients: s.clients };
  const calls = [{ method: 'GET', path: s.path, headers: s.headers }];
  await load(target, WARMUP, calls);
  const r: Run = await load(target, SECONDS, calls);
  if (s.bodyBytes >= 1 << 20) r.mb_per_s = round((r.ops_per_s * s.bodyBytes) / 1e6, 1);
  return r;
}

const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 3) : null);

try {
  const appPort = await startApp();
  const { api, env, address, caFile } = await startDev();
  const aegisPort = await startAegisPair(api, env, appPort);
  const haproxyPort = await startHaproxyPair(await haproxyFiles(api, address, caFile), appPort);
  const version = /version (\S+)/i.exec((await import('node:child_process')).spawnSync('haproxy', ['-v'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';

  for (const s of scenarios) {
    const direct = await measure(appPort, s);
    const aegis = await measure(aegisPort, s);
    const haproxy = await measure(haproxyPort, s);
    const added = (r: Run, k: 'p50_ms' | 'p99_ms') => round(r[k] - direct[k], 3);
    const line = {
      bench: 'mesh',
      scenario: s.name,
      mode: 'tcp',
      aegis: 'proxy processes',
      haproxy: `${version}, tcp mode, nbthread ${HAPROXY_THREADS}, ssl verify required, TLSv1.3, default server-side session reuse`,
      connections: s.clients,
      seconds: SECONDS,
      body_bytes: s.bodyBytes,
      new_connection_per_request: s.headers.connection === 'close',
      direct,
      aegis_pair: aegis,
      haproxy_pair: haproxy,
      ratios: {
        aegis_to_direct: ratio(aegis.ops_per_s, direct.ops_per_s),
        haproxy_to_direct: ratio(haproxy.ops_per_s, direct.ops_per_s),
        aegis_to_haproxy: ratio(aegis.ops_per_s, haproxy.ops_per_s),
      },
      added_p50_ms: { aegis: added(aegis, 'p50_ms'), haproxy: added(haproxy, 'p50_ms') },
      added_p99_ms: { aegis: added(aegis, 'p99_ms'), haproxy: added(haproxy, 'p99_ms') },
      target: 'aegis req/s >= haproxy req/s and aegis added p99 <= haproxy added p99',
      target_met: aegis.errors === 0 && aegis.ops_per_s >= haproxy.ops_per_s && added(aegis, 'p99_ms') <= added(haproxy, 'p99_ms'),
    };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
} catch (err) {
  process.stderr.write(`mesh bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

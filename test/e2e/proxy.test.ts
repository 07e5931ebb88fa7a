import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/client.js';
import { onCleanup } from '../helpers/cleanup.js';
import { BIN, ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// `aegis proxy` end to end, every part a real process on 127.0.0.1: an HTTPS dev server, one sidecar each for web,
// api and cron, and two echo apps. Intentions and revocations go through the API; bytes go through the mesh.

const BOUND_MS = 2_000; // the "within 1 s", with room for a loaded CI machine
const ROOT_TOKEN = 'proxy-e2e-root';

/** `aegis proxy` through bin/aegis.js once main.ts registers it; until then through registerProxy directly. */
function proxyCommand(args: string[]): string[] {
  if (readFileSync(join(ROOT, 'src/cli/main.ts'), 'utf8').includes('registerProxy(')) return [BIN, 'proxy', ...args];
  const runner = `import { Command } from 'commander'; import { registerProxy } from './src/cli/proxy.ts';
    const p = new Command('aegis'); registerProxy(p); await p.parseAsync(process.argv);`;
  return ['--import', 'tsx', '--input-type=module', '-e', runner, 'aegis', 'proxy', ...args];
}

interface Proc {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
}

function spawnProc(args: string[], env: NodeJS.ProcessEnv): Proc {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { err += d; });
  onCleanup(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, 'exit');
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(t);
  });
  return { proc, out: () => out, err: () => err };
}

/** Resolves with the first match of `re` on stdout, bounded. */
async function waitOutput(p: Proc, re: RegExp, what: string, ms = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(p.out());
    if (m) return m;
    if (p.proc.exitCode !== null) throw new Error(`${what} exited with ${p.proc.exitCode}:\n${p.out()}\n${p.err()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not print ${re} in ${ms} ms:\n${p.out()}\n${p.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function echoApp(name: string): Promise<Server> {
  const server = createServer((s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(`${name}:${d}`));
  });
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => server);
}

/** Sends `msg` on `socket`; the reply, or null when the connection closes first. Bounded. */
function exchange(socket: Socket, msg: string, ms = 5_000): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const done = (v: string | null) => { clearTimeout(t); socket.off('data', onData); socket.off('close', onClose); resolve(v); };
    const onData = (d: Buffer) => done(d.toString());
    const onClose = () => done(null);
    const t = setTimeout(() => reject(new Error(`no reply to ${msg} within ${ms} ms`)), ms);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(msg);
  });
}

async function open(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => s.destroy());
  onCleanup(() => s.destroy());
  await once(s, 'connect');
  return s;
}

/** One connection, one message: the reply or null (closed without data). */
async function once1(port: number, msg: string): Promise<string | null> {
  const s = await open(port);
  try {
    return await exchange(s, msg);
  } finally {
    s.destroy();
  }
}

/** Retries until `check` passes, at most `ms`; returns how long it took. */
async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves with the ms until `socket` closes; rejects after `ms`. */
function closesWithin(socket: Socket, ms: number): Promise<number> {
  const start = Date.now();
  if (socket.destroyed) return Promise.resolve(0);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the live connection was still open after ${ms} ms`)), ms);
    socket.once('close', () => { clearTimeout(t); resolve(Date.now() - start); });
  });
}

describe('aegis proxy (tcp): sidecars wired to a real server', () => {
  let server: Proc;
  let api: ApiClient;
  let env: NodeJS.ProcessEnv;
  const ports = { webUp: 0, cronUp: 0, webStatus: 0, apiStatus: 0 };

  async function proxy(service: string, app: number, upstream: boolean, status = false): Promise<Proc> {
    const jt = await api.ok('POST', 'identity/join-token', { body: { service } });
    const token = (jt.body as { data: { token: string } }).data.token;
    const args = ['--service', service, '--listen', '127.0.0.1:0', '--app', `127.0.0.1:${app}`, '--join-token', token, '--log-level', 'warn'];
    if (upstream) args.push('--upstream', 'api=127.0.0.1:0');
    if (status) args.push('--status-listen', '127.0.0.1:0');
    const p = spawnProc(proxyCommand(args), env);
    await waitOutput(p, upstream ? /upstream default\/api: \d+\n/ : /inbound: \d+\n/, `aegis proxy --service ${service}`);
    if (status) await waitOutput(p, /status: \d+\n/, 'status line');
    return p;
  }

  async function statusOf(port = ports.webStatus): Promise<any> {
    const res = await fetch(`http://127.0.0.1:${port}/status`);
    return res.json();
  }

  async function intention(src: string, action: 'allow' | 'deny'): Promise<void> {
    await api.ok('PUT', `mesh/intentions/default/${src}/default/api`, { body: { action } });
  }

  before(async () => {
    server = spawnProc([BIN, 'dev', '--tls', '--listen', '127.0.0.1:0', '--root-token', ROOT_TOKEN, '--data-dir', tempDir('proxy-dev'), '--log-level', 'warn', '--dns-listen', 'off'], {});
    const address = (await waitOutput(server, /Address:\s+(https:\/\/\S+)/, 'aegis dev --tls'))[1]!;
    const caFile = (await waitOutput(server, /TLS CA:\s+(\S+)/, 'aegis dev --tls'))[1]!;
    await waitOutput(server, /audit verify \S+\n/, 'aegis dev banner');
    // No token for the proxies: each runs on its own SVID and the built-in workload policy (least privilege).
    env = { AEGIS_ADDR: address, AEGIS_CACERT: caFile, AEGIS_TOKEN: '' };
    api = new ApiClient({ address, caCert: caFile, token: ROOT_TOKEN });
    const [webApp, apiApp] = await Promise.all([echoApp('web'), echoApp('api')]);
    const apiPort = (apiApp.address() as AddressInfo).port;
    const [web, apiProxy, cron] = await Promise.all([
      proxy('web', (webApp.address() as AddressInfo).port, true, true),
      proxy('api', apiPort, false, true),
      proxy('cron', apiPort, true),
    ]);
    ports.webUp = Number(/upstream default\/api: (\d+)/.exec(web.out())![1]);
    ports.cronUp = Number(/upstream default\/api: (\d+)/.exec(cron.out())![1]);
    ports.webStatus = Number(/status: (\d+)/.exec(web.out())![1]);
    ports.apiStatus = Number(/status: (\d+)/.exec(apiProxy.out())![1]);
    // web learns api's sidecar from the catalog (health/service/default/api-sidecar-proxy?passing).
    await within(10_000, 'web sees a healthy api sidecar', async () => (await statusOf()).upstreams['default/api'].instances.length === 1);
  });

  it('registers each sidecar as <service>-sidecar-proxy, kind connect-proxy, with its upstreams', async () => {
    const res = await api.ok('GET', 'health/service/default/web-sidecar-proxy', { query: { passing: 'true' } });
    const [entry] = JSON.parse(res.text) as { service: { kind: string; proxy: { destination_service: string; upstreams: { destination_name: string; local_bind_port: number }[] } } }[];
    assert.equal(entry!.service.kind, 'connect-proxy');
    assert.equal(entry!.service.proxy.destination_service, 'web');
    assert.deepEqual(entry!.service.proxy.upstreams.map((u) => [u.destination_name, u.local_bind_port]), [['api', ports.webUp]]);
  });

  it('default deny: without an intention, api\'s inbound closes the connection without data, and reports the denial', async () => {
    assert.equal(await once1(ports.webUp, 'hello'), null);
    // The denial goes to the server's mesh/events in a batch, authenticated by api's SVID.
    await within(5_000, 'the denial is delivered to mesh/events', async () => (await statusOf(ports.apiStatus)).events.sent >= 1);
    const s = await statusOf(ports.apiStatus);
    assert.equal(s.events.dropped, 0);
    assert.equal(s.inbound.denied >= 1, true);
  });

  it('with `allow web api`, bytes reach api\'s app and come back (applied within the bound)', async () => {
    await intention('web', 'allow');
    const took = await within(BOUND_MS, 'the allow applies', async () => (await once1(ports.webUp, 'hello')) === 'api:hello');
    assert.ok(took <= BOUND_MS, `took ${took} ms`);
  });

  it('a deny added while a connection is live closes it within the bound; new connections are refused', async () => {
    const live = await open(ports.webUp);
    assert.equal(await exchange(live, 'ping'), 'api:ping');
    const closed = closesWithin(live, BOUND_MS + 1_000);
    await intention('web', 'deny');
    assert.ok((await closed) <= BOUND_MS + 1_000);
    assert.equal(await once1(ports.webUp, 'again'), null);
    await intention('web', 'allow');
    await within(BOUND_MS, 'allowed again', async () => (await once1(ports.webUp, 'back')) === 'api:back');
  });

  it('revoking a SPIFFE ID closes every live connection of it within the bound', async () => {
    await intention('cron', 'allow');
    await within(BOUND_MS, 'cron allowed', async () => (await once1(ports.cronUp, 'tick')) === 'api:tick');
    const live = await open(ports.cronUp);
    assert.equal(await exchange(live, 'tick'), 'api:tick');
    const closed = closesWithin(live, BOUND_MS + 1_000);
    await api.ok('POST', 'identity/revoke', { body: { spiffe_id: 'spiffe://aegis.local/ns/default/svc/cron' } });
    assert.ok((await closed) <= BOUND_MS + 1_000);
    assert.equal(await once1(ports.cronUp, 'tock'), null);
  });

  it('fail static: with the server gone, a live path keeps working, new connections work, staleness grows', async () => {
    const live = await open(ports.webUp);
    assert.equal(await exchange(live, 'before'), 'api:before');
    const exited = once(server.proc, 'exit');
    server.proc.kill('SIGKILL');
    await exited;
    assert.equal(await exchange(live, 'during'), 'api:during');
    assert.equal(await once1(ports.webUp, 'fresh'), 'api:fresh');
    await within(4_000, 'staleness is reported', async () => (await statusOf()).staleness_seconds >= 1);
    assert.equal(await exchange(live, 'still'), 'api:still');
    live.destroy();
  });
});

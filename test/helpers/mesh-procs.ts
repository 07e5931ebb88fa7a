import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { ApiClient } from '../../src/cli/client.js';
import { onCleanup } from './cleanup.js';
import { BIN, ROOT } from './server.js';
import { tempDir } from './temp.js';
import { eventually } from './wait.js';

// Real processes for mesh end-to-end tests: an HTTPS dev server, `aegis proxy` sidecars attested with join
// tokens, small apps, and bounded helpers to talk through them. Everything on 127.0.0.1.

export interface Proc {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
}

/** A node process (args after the node binary), stopped with SIGTERM (then SIGKILL) at cleanup. */
export function spawnProc(args: string[], env: NodeJS.ProcessEnv): Proc {
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
export async function waitOutput(p: Proc, re: RegExp, what: string, ms = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(p.out());
    if (m) return m;
    if (p.proc.exitCode !== null) throw new Error(`${what} exited with ${p.proc.exitCode}:\n${p.out()}\n${p.err()}`);
    if (Date.now() > deadline) throw new Error(`${what} did not print ${re} in ${ms} ms:\n${p.out()}\n${p.err()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Retries until `check` passes, at most `ms`; returns how long it took. */
export async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  if (!(await eventually(check, ms))) throw new Error(`${what}: not within ${ms} ms`);
  return Date.now() - start;
}

/** A TCP app that answers every chunk with `<name>:<chunk>`. */
export function echoApp(name: string): Promise<Server> {
  const server = createServer((s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(`${name}:${d}`));
  });
  onCleanup(() => new Promise<void>((r) => server.close(() => r())));
  server.listen(0, '127.0.0.1');
  return once(server, 'listening').then(() => server);
}

export function portOf(server: { address(): unknown }): number {
  return (server.address() as AddressInfo).port;
}

/** Sends `msg` on `socket`; the reply, or null when the connection closes first. Bounded. */
export function exchange(socket: Socket, msg: string, ms = 5_000): Promise<string | null> {
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

export async function openTcp(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => s.destroy());
  onCleanup(() => s.destroy());
  await once(s, 'connect');
  return s;
}

/** One connection, one message: the reply or null (closed without data). */
export async function exchangeOnce(port: number, msg: string): Promise<string | null> {
  const s = await openTcp(port);
  try {
    return await exchange(s, msg);
  } finally {
    s.destroy();
  }
}

/** Resolves with the ms until `socket` closes; rejects after `ms`. */
export function closesWithin(socket: { destroyed: boolean; once(e: 'close', f: () => void): unknown }, ms: number): Promise<number> {
  const start = Date.now();
  if (socket.destroyed) return Promise.resolve(0);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the live connection was still open after ${ms} ms`)), ms);
    socket.once('close', () => { clearTimeout(t); resolve(Date.now() - start); });
  });
}

export interface MeshServer {
  proc: Proc;
  api: ApiClient;
  /** For proxies: the address and CA, and no token (a proxy runs on its SVID alone). */
  env: NodeJS.ProcessEnv;
}

/** `aegis dev --tls` as a real process on a free port. */
export async function startMeshServer(rootToken: string): Promise<MeshServer> {
  const proc = spawnProc([BIN, 'dev', '--tls', '--listen', '127.0.0.1:0', '--root-token', rootToken, '--data-dir', tempDir('mesh-dev'), '--log-level', 'warn', '--dns-listen', 'off'], {});
  const address = (await waitOutput(proc, /Address:\s+(https:\/\/\S+)/, 'aegis dev --tls'))[1]!;
  const caFile = (await waitOutput(proc, /TLS CA:\s+(\S+)/, 'aegis dev --tls'))[1]!;
  await waitOutput(proc, /audit verify \S+\n/, 'aegis dev banner');
  return { proc, api: new ApiClient({ address, caCert: caFile, token: rootToken }), env: { AEGIS_ADDR: address, AEGIS_CACERT: caFile, AEGIS_TOKEN: '' } };
}

export interface ProxyProc extends Proc {
  inbound: number;
  admin: number;
  /** Local listener port per upstream service name. */
  upstreams: Record<string, number>;
}

/** `aegis proxy` for `service` in front of the app on `appPort`, with an admin port; waits until it serves. */
export async function startProxy(server: MeshServer, service: string, appPort: number, opts: { upstreams?: string[]; mode?: 'tcp' | 'http'; extra?: string[] } = {}): Promise<ProxyProc> {
  const jt = await server.api.ok('POST', 'identity/join-token', { body: { service } });
  const token = (jt.body as { data: { token: string } }).data.token;
  const args = [BIN, 'proxy', '--service', service, '--listen', '127.0.0.1:0', '--app', `127.0.0.1:${appPort}`, '--join-token', token,
    '--log-level', 'warn', '--admin-listen', '127.0.0.1:0', '--mode', opts.mode ?? 'tcp', ...(opts.extra ?? [])];
  for (const u of opts.upstreams ?? []) args.push('--upstream', `${u}=127.0.0.1:0`);
  const p = spawnProc(args, server.env);
  await waitOutput(p, /admin: \d+\n/, `aegis proxy --service ${service}`);
  const upstreams: Record<string, number> = {};
  for (const u of opts.upstreams ?? []) upstreams[u] = Number(new RegExp(`upstream default/${u}: (\\d+)`).exec(p.out())![1]);
  return { ...p, inbound: Number(/inbound: (\d+)/.exec(p.out())![1]), admin: Number(/admin: (\d+)/.exec(p.out())![1]), upstreams };
}

/** GET /status on a proxy's admin port. */
export async function proxyStatus(p: { admin: number }): Promise<any> {
  return (await fetch(`http://127.0.0.1:${p.admin}/status`)).json();
}

/** Waits until `p` sees `n` healthy instances of `upstream` (learned from the catalog). */
export async function awaitInstances(p: ProxyProc, upstream: string, n = 1, ms = 10_000): Promise<void> {
  await within(ms, `${upstream} has ${n} healthy instance(s) at the proxy`, async () => (await proxyStatus(p)).upstreams[`default/${upstream}`].instances.length === n);
}

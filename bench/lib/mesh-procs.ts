import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

// Child processes for the mesh benchmark: every one is tracked so that a failure, a signal or the overall time
// bound stops them all (SIGTERM, then SIGKILL after a grace period), and bounded waits on their output.

export interface Child {
  name: string;
  proc: ChildProcess;
  out(): string;
  err(): string;
}

const children = new Set<Child>();

export function spawnChild(name: string, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Child {
  const proc = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => { out += d; if (out.length > 1e6) out = out.slice(-5e5); });
  proc.stderr!.on('data', (d) => { err += d; if (err.length > 1e6) err = err.slice(-5e5); });
  proc.on('error', (e) => { err += `\nspawn error: ${e.message}`; });
  const child: Child = { name, proc, out: () => out, err: () => err };
  children.add(child);
  proc.on('exit', () => children.delete(child));
  return child;
}

function alive(c: Child): boolean {
  return c.proc.exitCode === null && c.proc.signalCode === null;
}

export async function stopChild(c: Child, graceMs = 5_000): Promise<void> {
  if (!alive(c)) return;
  const exited = once(c.proc, 'exit');
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => { if (alive(c)) c.proc.kill('SIGKILL'); }, graceMs);
  await exited;
  clearTimeout(t);
}

/** Stops every tracked child (in reverse start order). */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].reverse().map((c) => stopChild(c)));
}

/** Synchronous last resort (process 'exit'): SIGKILL whatever is still running. */
export function killAllNow(): void {
  for (const c of children) if (alive(c)) c.proc.kill('SIGKILL');
}

/** The first match of `re` on the child's stdout (or stderr with `stream: 'err'`), bounded. */
export async function waitOutput(c: Child, re: RegExp, ms = 30_000, stream: 'out' | 'err' = 'out'): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = re.exec(stream === 'out' ? c.out() : c.err());
    if (m) return m;
    if (!alive(c)) throw new Error(`${c.name} exited (${c.proc.exitCode ?? c.proc.signalCode}) before printing ${re}:\n${c.out().slice(-2000)}\n${c.err().slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`${c.name} did not print ${re} within ${ms} ms:\n${c.out().slice(-2000)}\n${c.err().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A free loopback TCP port (bound and released; good enough on a quiet machine). */
export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** One plain HTTP GET on a fresh connection: the status, or 0 on any error. Bounded (2 s). */
export function httpStatus(port: number, path = '/'): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: 2_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Retries until GET `path` through `port` answers 200, at most `ms`. */
export async function waitHttp200(port: number, what: string, ms = 15_000, path = '/'): Promise<void> {
  const deadline = Date.now() + ms;
  let last = 0;
  while (Date.now() < deadline) {
    last = await httpStatus(port, path);
    if (last === 200) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: GET ${path} on 127.0.0.1:${port} did not answer 200 within ${ms} ms (last status ${last})`);
}

export function commandExists(cmd: string, versionArg: string): boolean {
  return spawnSync(cmd, [versionArg], { stdio: 'ignore' }).error === undefined;
}

/**
 * The upstream app, in its own process: HTTP/1.1 keep-alive, a short body on `/` and a 1 MiB body on `/big`
 * (both prepared once). Prints `app: PORT`.
 */
export const APP_SOURCE = `
import { createServer } from 'node:http';
const small = Buffer.from('hello from the app\\n');
const big = Buffer.alloc(1 << 20, 120);
const s = createServer((req, res) => {
  const b = req.url === '/big' ? big : small;
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length });
  res.end(b);
});
s.keepAliveTimeout = 120000;
s.headersTimeout = 125000;
s.listen(0, '127.0.0.1', () => process.stdout.write('app: ' + s.address().port + '\\n'));
process.on('SIGTERM', () => process.exit(0));
`;

export interface HaproxyPairFiles {
  /** Client SVID chain + key (outbound's `crt`). */
  clientPem: string;
  /** Server SVID chain + key (inbound's `crt`). */
  serverPem: string;
  /** The trust bundle (both `ca-file`s). */
  bundle: string;
}

/** outbound (plain TCP in) → mTLS, verify required, TLS 1.3 only → inbound → app. TCP mode both ends. */
export function haproxyConfigs(f: HaproxyPairFiles, ports: { outbound: number; inbound: number; app: number }, threads: number): { outbound: string; inbound: string } {
  const head = `global
  nbthread ${threads}
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
`;
  return {
    outbound: `${head}
frontend local
  bind 127.0.0.1:${ports.outbound}
  default_backend mesh
backend mesh
  server inbound 127.0.0.1:${ports.inbound} ssl verify required ca-file ${f.bundle} crt ${f.clientPem} ssl-min-ver TLSv1.3
`,
    inbound: `${head}
frontend mtls
  bind 127.0.0.1:${ports.inbound} ssl crt ${f.serverPem} ca-file ${f.bundle} verify required ssl-min-ver TLSv1.3
  default_backend app
backend app
  server app 127.0.0.1:${ports.app}
`,
  };
}

/**
 * True when a TLS client that trusts the bundle but presents no certificate gets no HTTP answer through `port`
 * (the mTLS listener really requires a client certificate). Bounded (3 s).
 */
export function refusesWithoutClientCert(port: number, bundlePem: string): Promise<boolean> {
  return new Promise((resolve) => {
    let data = '';
    const s = tlsConnect({ host: '127.0.0.1', port, ca: bundlePem, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
      s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    const t = setTimeout(() => { s.destroy(); resolve(!/^HTTP\/1\.1 200/.test(data)); }, 3_000);
    s.on('data', (d) => { data += d; });
    const done = () => { clearTimeout(t); resolve(!/^HTTP\/1\.1 200/.test(data)); };
    s.on('error', done);
    s.on('close', done);
  });
}

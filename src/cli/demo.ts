import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { ApiClient, CliError } from './client.js';
import { action } from './command.js';
import { say } from './output.js';

// `aegis demo`: the mesh end to end, as real processes on 127.0.0.1 — a dev server (HTTPS), three tiny HTTP apps
// (web → api → db, served by this process) and one `aegis proxy` per app. It narrates an allowed call, a denied
// call and a revocation cutting a live connection, checking each against the proxies' own counters, then stops
// everything. Any surprise stops everything too: the children's log tails, then one error line, exit 1.

const BIN = resolve(fileURLToPath(new URL('../../bin/aegis.js', import.meta.url)));
const TRUST_DOMAIN = 'aegis.local';
const START_MS = 30_000; // a child printing its banner (tsx compiles on first start)
const READY_MS = 15_000; // proxies seeing each other in the catalog and loading their policy
const CUT_MS = 5_000; // the revocation cutting the live stream (the target is 1 s)
const CALL_MS = 5_000; // one HTTP call through the mesh
const STOP_MS = 5_000; // a child leaving after SIGTERM, before SIGKILL
const TAIL_LINES = 15;

const spiffe = (service: string) => `spiffe://${TRUST_DOMAIN}/ns/default/svc/${service}`;

interface DemoFlags {
  keep?: boolean;
  dataDir?: string;
}

export function registerDemo(program: Command): void {
  program.command('demo')
    .description('see the mesh work: a dev server and web → api → db, each behind a proxy; an allowed call, a denied call, a revocation cutting a live connection')
    .option('--keep', 'after the steps, stay up (addresses and root token printed) until Ctrl-C')
    .option('--data-dir <dir>', 'keep the dev server\'s data here, a new or empty folder (default: a temporary folder removed at the end)')
    .action(action(async (o: DemoFlags) => {
      const dataDir = o.dataDir === undefined ? null : checkDataDir(o.dataDir);
      const demo = new Demo(Boolean(o.keep), dataDir);
      try {
        await demo.run();
      } finally {
        // Whatever is left (an SDK handle, a stray socket) must not keep a finished demo alive.
        setTimeout(() => process.exit(), 2_000).unref();
      }
    }));
}

/** `--data-dir`: a new folder whose parent exists, or an existing empty one (an old demo's revocations would break this one). */
function checkDataDir(dir: string): string {
  const abs = resolve(dir);
  if (existsSync(abs)) {
    if (!statSync(abs).isDirectory()) throw new CliError(`--data-dir ${dir}: not a folder`, 2);
    if (readdirSync(abs).length > 0) throw new CliError(`--data-dir ${dir}: not empty (give a new or empty folder: the demo revokes an identity and must start clean)`, 2);
    return abs;
  }
  if (!existsSync(dirname(abs))) throw new CliError(`--data-dir ${dir}: its parent folder ${dirname(abs)} does not exist`, 2);
  return abs;
}

/** What `aegis` is called here: ./bin/aegis.js from a checkout, the absolute path elsewhere. */
function cliName(): string {
  const rel = relative(process.cwd(), BIN);
  return rel.startsWith('..') || rel.startsWith('/') ? BIN : `./${rel}`;
}

/** A child `aegis …` process: stdout kept whole (it is short), stderr kept as a bounded tail. */
class Child {
  readonly proc: ChildProcess;
  private out = '';
  private err = '';
  readonly exited: Promise<void>;

  constructor(readonly name: string, args: string[], env: NodeJS.ProcessEnv) {
    // Its own process group: a Ctrl-C reaches only the demo, which stops the children in order (proxies, then the
    // server they deregister from).
    this.proc = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.proc.stdout!.on('data', (d: Buffer) => { this.out += d.toString(); });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.err += d.toString();
      if (this.err.length > 64 * 1024) this.err = this.err.slice(-32 * 1024);
    });
    this.exited = new Promise((r) => this.proc.once('exit', () => r()));
    this.proc.once('error', () => undefined); // spawn failures surface as 'exit' with a code too
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get stdout(): string {
    return this.out;
  }

  tail(): string[] {
    return this.err.trimEnd().split('\n').filter((l) => l !== '').slice(-TAIL_LINES);
  }

  /** The first match of `re` on stdout. */
  async waitFor(re: RegExp): Promise<RegExpExecArray> {
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (!this.alive) throw new CliError(`${this.name} exited with ${this.proc.exitCode ?? this.proc.signalCode} before it was ready`);
      await sleep(25);
    }
  }

  /** SIGTERM, then SIGKILL after STOP_MS. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => { if (this.alive) this.proc.kill('SIGKILL'); }, STOP_MS);
    await this.exited;
    clearTimeout(t);
  }
}

interface Reply {
  status: number;
  body: string;
}

/** One plain HTTP GET to 127.0.0.1, a fresh connection each time (no pooled sockets across the mesh). */
function get(port: number, path: string, ms = CALL_MS): Promise<Reply> {
  return new Promise((resolveGet, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' }, timeout: ms }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => reject(err));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${ms} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(new Error(err.code === 'ECONNRESET' ? 'the connection was closed before any answer' : err.message));
    });
    req.end();
  });
}

/** A GET that never rejects: a failed call becomes a 502 carrying why. */
async function call(port: number, path: string): Promise<Reply> {
  try {
    return await get(port, path);
  } catch (err) {
    return { status: 502, body: (err as Error).message };
  }
}

/** A tiny HTTP app on a free loopback port. */
async function app(handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): Promise<Server> {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${err.message}\n`);
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise<void>((r, reject) => { server.once('listening', () => r()); server.once('error', reject); });
  return server;
}

const portOf = (s: Server) => (s.address() as AddressInfo).port;

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${body}\n`);
}

/** Answers `<name> → <what the upstream answered>`, or 502 with why the upstream call failed. */
async function relay(res: ServerResponse, name: string, upstream: string, port: number): Promise<void> {
  const r = await call(port, '/');
  if (r.status === 200) return text(res, 200, `${name} → ${r.body.trim()}`);
  return text(res, 502, r.status === 502 && !r.body.includes('→') ? `${name} → ${upstream} failed: ${r.body.trim()}` : `${name} → ${r.body.trim()}`);
}

/** A long-lived HTTP stream: the lines received so far, and when it closed. */
interface Stream {
  lines: string[];
  /** Resolves with the time it closed (Date.now()). */
  closed: Promise<number>;
  destroy(): void;
}

function openStream(port: number, path: string): Promise<Stream> {
  return new Promise((resolveOpen, reject) => {
    let closedAt: (t: number) => void = () => undefined;
    const closed = new Promise<number>((r) => { closedAt = r; });
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`the stream answered ${res.statusCode}`));
      }
      const stream: Stream = { lines: [], closed, destroy: () => req.destroy() };
      let partial = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        const parts = (partial + d).split('\n');
        partial = parts.pop()!;
        stream.lines.push(...parts);
      });
      res.on('error', () => undefined);
      res.once('close', () => closedAt(Date.now()));
      resolveOpen(stream);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      closedAt(Date.now());
      reject(new Error(err.code === 'ECONNRESET' ? 'the connection was closed before any answer' : err.message));
    });
    req.end();
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ProxyStatus {
  statements: number;
  inbound: { accepted: number; denied: number; refused: number; cut: number; active: number } | null;
  upstreams: Record<string, { port: number; instances: string[]; failedAttempts: number }>;
}

interface ProxyInfo {
  child: Child;
  inbound: number;
  status: number;
  upstreams: Record<string, number>;
}

type Service = 'web' | 'api' | 'db';

class Demo {
  private readonly children: Child[] = [];
  private readonly apps: Server[] = [];
  private readonly streams: Stream[] = [];
  private stopping = false;
  private failure: CliError | null = null;
  private onFailure: (err: CliError) => void = () => undefined;
  private readonly failed: Promise<never>;
  private readonly started = Date.now();
  private readonly upstreamPorts = { webApi: 0, webDb: 0, apiDb: 0 };
  private readonly cli = cliName();
  private api!: ApiClient;
  private signal: NodeJS.Signals | null = null;

  constructor(private readonly keep: boolean, private readonly givenDataDir: string | null) {
    this.failed = new Promise<never>((_, reject) => { this.onFailure = reject; });
    this.failed.catch(() => undefined);
  }

  /** Stops every step that is waiting: the first failure wins. */
  private fail(err: CliError): void {
    if (this.failure || this.stopping) return;
    this.failure = err;
    this.onFailure(err);
  }

  /** `p`, unless a child dies, a signal arrives or `ms` pass first. */
  private async bounded<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CliError(`${what}: not done within ${(ms / 1000).toFixed(1)} s`)), ms);
    });
    try {
      return await Promise.race([p, timeout, this.failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Polls `check` every 50 ms until it holds, bounded. */
  private async until(what: string, ms: number, check: () => Promise<boolean>): Promise<number> {
    const start = Date.now();
    let over = false;
    try {
      return await this.bounded(what, ms, (async () => {
        for (; !over;) {
          if (await check().catch(() => false)) return Date.now() - start;
          await sleep(50);
        }
        return 0; // given up on: the bound or a failure already answered
      })());
    } finally {
      over = true;
    }
  }

  private spawn(name: string, args: string[], env: NodeJS.ProcessEnv): Child {
    const child = new Child(name, args, env);
    this.children.push(child);
    child.proc.once('exit', (code, sig) => {
      if (!this.stopping) this.fail(new CliError(`${name} (pid ${child.pid}) exited unexpectedly (${code !== null ? `exit code ${code}` : sig})`));
    });
    return child;
  }

  async run(): Promise<void> {
    const onSignal = (sig: NodeJS.Signals) => {
      this.signal = sig;
      this.fail(new CliError(`interrupted (${sig}); everything was stopped`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Last resort if this process dies some other way: no child outlives it.
    const killAll = () => { for (const c of this.children) if (c.alive) c.proc.kill('SIGKILL'); };
    process.once('exit', killAll);
    const dataDir = this.givenDataDir ?? mkdtempSync(join(tmpdir(), 'aegis-demo-'));
    let tails: string[] = [];
    try {
      await this.steps(dataDir);
      if (this.keep) await this.stayUp();
    } catch (err) {
      const e = err instanceof CliError ? err : new CliError((err as Error).message);
      tails = this.children.flatMap((c) => {
        const t = c.tail();
        return t.length === 0 ? [] : [`--- ${c.name} (pid ${c.pid}), last lines of its log:`, ...t];
      });
      this.failure ??= e;
    } finally {
      await this.shutdown(dataDir, this.failure === null);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('exit', killAll);
    }
    if (this.failure) {
      if (tails.length > 0 && !this.signal) process.stderr.write(`${tails.join('\n')}\n`);
      throw this.failure;
    }
  }

  private async steps(dataDir: string): Promise<void> {
    const cli = this.cli;
    say('Aegis demo: three services, web → api → db, each behind its own sidecar proxy.');
    say('Everything runs on 127.0.0.1 (free ports) and is stopped at the end.');
    say('');

    // --- The dev server.
    const rootToken = `demo-${randomBytes(12).toString('hex')}`;
    const dev = this.spawn('dev server', ['dev', '--tls', '--listen', '127.0.0.1:0', '--dns-listen', 'off', '--data-dir', dataDir, '--root-token', rootToken, '--log-level', 'warn'], withoutAegisEnv());
    const address = (await this.bounded('starting the dev server', START_MS, dev.waitFor(/Address:\s+(https:\/\/\S+)/)))[1]!;
    const caFile = (await this.bounded('starting the dev server', START_MS, dev.waitFor(/TLS CA:\s+(\S+)/)))[1]!;
    await this.bounded('starting the dev server', START_MS, dev.waitFor(/audit verify \S+\n/));
    this.api = new ApiClient({ address, caCert: caFile, token: rootToken });
    const env: NodeJS.ProcessEnv = { ...withoutAegisEnv(), AEGIS_ADDR: address, AEGIS_CACERT: caFile, AEGIS_TOKEN: rootToken };
    say('Setting up');
    say(`  dev server   pid ${dev.pid}  ${address}  (HTTPS with its own CA; data in ${dataDir}${this.givenDataDir ? ', kept' : ', removed at the end'})`);

    // --- The apps: each answers with its name; web and api call their upstream through their own proxy.
    const db = await app((req, res) => {
      if (req.url === '/ticks') return void this.ticks(res);
      text(res, 200, 'db');
    });
    const api = await app((_req, res) => relay(res, 'api', 'db', this.upstreamPorts.apiDb));
    const web = await app((req, res) => (req.url === '/db' ? relay(res, 'web', 'db', this.upstreamPorts.webDb) : relay(res, 'web', 'api', this.upstreamPorts.webApi)));
    this.apps.push(web, api, db);
    say(`  apps         web :${portOf(web)}, api :${portOf(api)}, db :${portOf(db)}  (tiny HTTP servers in this process; each answers with its name)`);

    // --- Intentions first, so each proxy starts with its policy loaded.
    await this.bounded('writing intentions', CALL_MS, this.api.ok('PUT', 'mesh/intentions/default/web/default/api', { body: { action: 'allow' } }));
    await this.bounded('writing intentions', CALL_MS, this.api.ok('PUT', 'mesh/intentions/default/api/default/db', { body: { action: 'allow' } }));
    say('  intentions   web → api: allow, api → db: allow  (anything else: default deny)');

    // --- One proxy per app, each attested with its own single-use join token.
    const [pWeb, pApi, pDb] = await Promise.all([
      this.proxy('web', portOf(web), ['api', 'db'], env),
      this.proxy('api', portOf(api), ['db'], env),
      this.proxy('db', portOf(db), [], env),
    ]);
    this.upstreamPorts.webApi = pWeb.upstreams.api!;
    this.upstreamPorts.webDb = pWeb.upstreams.db!;
    this.upstreamPorts.apiDb = pApi.upstreams.db!;
    const proxies = { web: pWeb, api: pApi, db: pDb };
    for (const [name, p] of Object.entries(proxies)) {
      const ups = Object.entries(p.upstreams).map(([u, port]) => `${u} → :${port}`);
      say(`  proxy ${name.padEnd(6)} pid ${p.child.pid}  mTLS inbound :${p.inbound}${ups.length ? `; local listener${ups.length > 1 ? 's' : ''} ${ups.join(', ')}` : ''}; admin :${p.status} (/metrics)`);
    }
    say(`  Each proxy proved who it is with a join token and holds an X.509 SVID (${spiffe('<name>')}).`);
    say('  Apps talk only to their own proxy, in plain HTTP on 127.0.0.1; proxies talk to each other over mutual TLS.');

    // Ready when web and api see their upstreams' sidecars in the catalog and api and db hold their policy.
    const status = (s: Service) => get(proxies[s].status, '/status').then((r) => JSON.parse(r.body) as ProxyStatus);
    await this.until('the proxies finding each other in the catalog', READY_MS, async () => {
      const [w, a, d] = await Promise.all([status('web'), status('api'), status('db')]);
      return w.upstreams['default/api']!.instances.length > 0 && w.upstreams['default/db']!.instances.length > 0
        && a.upstreams['default/db']!.instances.length > 0 && a.statements > 0 && d.statements > 0;
    });
    say('');
    say('To run the commands below yourself, start the demo with --keep and use, in another terminal:');
    say(`  export AEGIS_ADDR=${address} AEGIS_CACERT=${caFile} AEGIS_TOKEN=${rootToken}`);

    // --- Step 1: allowed.
    say('');
    say('Step 1. An allowed call: web → api → db');
    say('  web\'s app calls api through its proxy\'s local listener; api\'s app calls db the same way.');
    const before1 = { api: await status('api'), db: await status('db') };
    say(`  $ curl http://127.0.0.1:${portOf(web)}/`);
    const chain = await this.bounded('the call web → api → db', CALL_MS * 2, call(portOf(web), '/'));
    for (const line of chain.body.trimEnd().split('\n')) say(`  ${line}`);
    if (chain.status !== 200 || chain.body.trim() !== 'web → api → db') throw new CliError(`step 1: the call web → api → db failed: ${chain.status} ${chain.body.trim()}`);
    const after1 = { api: await status('api'), db: await status('db') };
    const admitted = (b: ProxyStatus, a: ProxyStatus) => a.inbound!.accepted - b.inbound!.accepted;
    if (admitted(before1.api, after1.api) < 1 || admitted(before1.db, after1.db) < 1) throw new CliError('step 1: the answer came back, but the proxies did not count the connections');
    say('  api\'s proxy admitted web and db\'s proxy admitted api: each verified the caller\'s certificate and');
    say('  found an intention before passing a single byte to its app.');

    // --- Step 2: denied.
    say('');
    say('Step 2. A call nobody allowed: web → db directly');
    say('  web\'s proxy also has a local listener for db, but no intention lets web call db.');
    const deniedBefore = (await status('db')).inbound!.denied;
    say(`  $ curl http://127.0.0.1:${portOf(web)}/db`);
    const direct = await this.bounded('the call web → db', CALL_MS * 2, call(portOf(web), '/db'));
    say(`  ${direct.body.trim()}   (HTTP ${direct.status})`);
    if (direct.status === 200) throw new CliError('step 2: web → db was allowed, but no intention allows it');
    await this.until('db\'s proxy counting the denial', CALL_MS, async () => (await status('db')).inbound!.denied > deniedBefore);
    const deniedAfter = (await status('db')).inbound!.denied;
    say(`  db's proxy verified web's certificate, found no intention and closed the connection (denied: ${deniedBefore} → ${deniedAfter}).`);
    say(`  $ ${cli} intention check web db`);
    const check = await this.bounded('aegis intention check web db', START_MS, this.runCli(['intention', 'check', 'web', 'db'], env));
    for (const line of check.out.trimEnd().split('\n')) say(`  ${line}`);
    if (check.code !== 2 || !check.out.startsWith('Denied')) throw new CliError(`step 2: \`intention check web db\` exited ${check.code}: ${(check.out + check.err).trim().split('\n')[0]}`);
    say('  Default deny: a valid identity is not enough; every connection also needs an intention.');

    // --- Step 3: revocation cuts a live connection.
    say('');
    say('Step 3. Revoking an identity cuts its live connections');
    say('  api\'s app opens a long-lived stream to db through its proxy; db sends a line every 200 ms.');
    say(`  $ curl -N http://127.0.0.1:${this.upstreamPorts.apiDb}/ticks`);
    const stream = await this.bounded('opening the stream api → db', CALL_MS, openStream(this.upstreamPorts.apiDb, '/ticks'));
    this.streams.push(stream);
    let shown = 0;
    const show = () => { for (; shown < stream.lines.length; shown++) say(`  ${stream.lines[shown]}`); };
    await this.until('three ticks from db', CALL_MS, async () => { show(); return stream.lines.length >= 3; });
    const cutBefore = (await status('db')).inbound!.cut;
    say('  Now revoke api\'s identity on the server (every certificate of its SPIFFE ID):');
    say(`  $ ${cli} identity revoke --spiffe-id ${spiffe('api')}`);
    const revokedAt = Date.now();
    await this.bounded('revoking api', CALL_MS, this.api.ok('POST', 'identity/revoke', { body: { spiffe_id: spiffe('api') } }));
    const closedAt = await this.bounded('the live stream api → db being cut after the revocation', CUT_MS, stream.closed);
    show();
    const cutMs = closedAt - revokedAt;
    await this.until('db\'s proxy counting the cut', CALL_MS, async () => (await status('db')).inbound!.cut > cutBefore);
    const cutAfter = (await status('db')).inbound!.cut;
    say(`  The stream was cut ${cutMs} ms after the revocation was sent: db's proxy learned of it and closed`);
    say(`  api's live connection itself (cut: ${cutBefore} → ${cutAfter}; ${stream.lines.length} ticks had come through).${cutMs > 1000 ? ' That is slower than the 1 s target.' : ''}`);
    say('  New calls through api fail too:');
    const refusedBefore = (await status('web')).upstreams['default/api']!.failedAttempts;
    say(`  $ curl http://127.0.0.1:${portOf(web)}/`);
    let after: Reply = { status: 0, body: '' };
    await this.until('the call web → api → db failing after the revocation', CUT_MS, async () => (after = await call(portOf(web), '/')).status !== 200);
    say(`  ${after.body.trim()}   (HTTP ${after.status})`);
    const refusedAfter = (await status('web')).upstreams['default/api']!.failedAttempts;
    if (refusedAfter > refusedBefore) say(`  web's proxy refused api's certificate, now revoked (failed attempts to api: ${refusedBefore} → ${refusedAfter}).`);
    say('  A revoked identity stops working at once, on new and on already open connections.');

    say('');
    say('Summary');
    say('  1. allowed   web → api → db went through two mutual-TLS hops, each admitted by an intention.');
    say('  2. denied    web → db was refused by db\'s proxy: no intention, so default deny.');
    say(`  3. revoked   api's live stream to db was cut ${cutMs} ms after api's identity was revoked.`);

    if (this.keep) {
      say('');
      say('Still running (--keep). api stays revoked, so calls through api fail; everything else is live.');
      say(`  export AEGIS_ADDR=${address} AEGIS_CACERT=${caFile} AEGIS_TOKEN=${rootToken}`);
      say(`  root token   ${rootToken}`);
      say(`  dev server   ${address}   (CA ${caFile})`);
      say(`  apps         web http://127.0.0.1:${portOf(web)}/  api http://127.0.0.1:${portOf(api)}/  db http://127.0.0.1:${portOf(db)}/`);
      for (const [name, p] of Object.entries(proxies)) say(`  proxy ${name.padEnd(6)} curl http://127.0.0.1:${p.status}/status`);
      say(`  try          ${cli} intention list; ${cli} catalog services; ${cli} intention allow web db && curl http://127.0.0.1:${portOf(web)}/db`);
      say('Press Ctrl-C to stop.');
    }
  }

  /** db's /ticks: `tick N` every 200 ms until the client goes (or five minutes pass). */
  private ticks(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    let n = 0;
    const tick = () => {
      res.write(`tick ${++n}\n`);
      if (n >= 1500) finish();
    };
    const timer = setInterval(tick, 200);
    const finish = () => { clearInterval(timer); res.end(); };
    res.once('close', () => clearInterval(timer));
    tick();
  }

  private async proxy(service: Service, appPort: number, upstreams: string[], env: NodeJS.ProcessEnv): Promise<ProxyInfo> {
    const jt = await this.bounded(`a join token for ${service}`, CALL_MS, this.api.ok('POST', 'identity/join-token', { body: { service } }));
    const token = (jt.body as { data: { token: string } }).data.token;
    const args = ['proxy', '--service', service, '--mode', 'tcp', '--listen', '127.0.0.1:0', '--app', `127.0.0.1:${appPort}`, '--join-token', token,
      '--admin-listen', '127.0.0.1:0', '--log-level', 'info', ...upstreams.flatMap((u) => ['--upstream', `${u}=127.0.0.1:0`])];
    const child = this.spawn(`proxy ${service}`, args, env);
    const out = (await this.bounded(`starting the proxy for ${service}`, START_MS, child.waitFor(/inbound: (\d+)\n[\s\S]*admin: (\d+)\n/)));
    const ups: Record<string, number> = {};
    for (const u of upstreams) ups[u] = Number(new RegExp(`upstream default/${u}: (\\d+)`).exec(child.stdout)![1]);
    return { child, inbound: Number(out[1]), status: Number(out[2]), upstreams: ups };
  }

  /** A one-shot `aegis …` (its exit is expected), killed if it outlives the bound. */
  private runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
    const proc = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const t = setTimeout(() => proc.kill('SIGKILL'), START_MS);
    return new Promise((r) => proc.once('close', (code) => { clearTimeout(t); r({ code, out, err }); }));
  }

  /** --keep: until SIGINT/SIGTERM (a clean stop) or a child dying (a failure). */
  private async stayUp(): Promise<void> {
    try {
      await this.failed;
    } catch (err) {
      if (this.signal) {
        this.failure = null; // asked to stop: not a failure
        return;
      }
      throw err;
    }
  }

  /** Proxies first (they deregister from the server), then the server; then the apps and the temp data dir. */
  private async shutdown(dataDir: string, loud: boolean): Promise<void> {
    this.stopping = true;
    if (loud) process.stdout.write('\nStopping the proxies and the dev server... ');
    for (const s of this.streams) s.destroy();
    const proxies = this.children.filter((c) => c.name.startsWith('proxy'));
    await Promise.all(proxies.map((c) => c.stop()));
    await Promise.all(this.children.map((c) => c.stop()));
    await Promise.all(this.apps.map((s) => new Promise<void>((r) => { s.closeAllConnections(); s.close(() => r()); })));
    if (!this.givenDataDir) rmSync(dataDir, { recursive: true, force: true });
    if (loud) say(`done (the demo took ${((Date.now() - this.started) / 1000).toFixed(1)} s).`);
  }
}

/** The demo's children get exactly the AEGIS_* settings it gives them, never the caller's. */
function withoutAegisEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AEGIS_')) delete env[k];
  return env;
}

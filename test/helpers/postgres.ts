// A real PostgreSQL for tests and benchmarks, from Debian's binaries: initdb into a temp dir (superuser with a
// password, scram-sha-256 for every connection), listening on 127.0.0.1:<free port> only, its unix socket inside
// the temp dir, started with `pg_ctl start -w`. No node:test import at module level, so benchmarks can use
// `launchPostgres` too; `startPostgres` (tests) shares one cluster per test file and stops it when the file ends.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PostgresServer {
  port: number;
  /** The superuser's URL: postgresql://<superuser>:<password>@127.0.0.1:<port>/postgres */
  url: string;
  superuser: string;
  password: string;
  /** Runs SQL as the superuser (a small pool kept open until stop). */
  query<R extends pg.QueryResultRow = any>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>>;
  /** A connected client for `user` (throws what PostgreSQL answered, e.g. 28P01 for a bad password). */
  connect(user: string, password: string, database?: string): Promise<pg.Client>;
  /** Whether `user` logs in with `password`: true, or the SQLSTATE (or error code) of the refusal. */
  login(user: string, password: string): Promise<true | string>;
  roleExists(name: string): Promise<boolean>;
  dir: string;
  stop(): Promise<void>;
}

/** The newest /usr/lib/postgresql/<major>/bin (AEGIS_PG_BIN overrides). */
export function postgresBin(): string {
  if (process.env.AEGIS_PG_BIN) return process.env.AEGIS_PG_BIN;
  const base = '/usr/lib/postgresql';
  const majors = existsSync(base) ? readdirSync(base).filter((d) => /^\d+$/.test(d) && existsSync(join(base, d, 'bin/initdb'))) : [];
  if (majors.length === 0) throw new Error('PostgreSQL is not installed: no /usr/lib/postgresql/<major>/bin/initdb (apt-get install postgresql)');
  majors.sort((a, b) => Number(b) - Number(a));
  return join(base, majors[0]!, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** initdb refuses to run as root: as root, PostgreSQL's programs run as the `postgres` user Debian's package made. */
function runAs(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, but there is no "postgres" user to run PostgreSQL as (install Debian\'s postgresql package)');
  }
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | null, cwd: string, timeoutMs: number): Promise<string> {
  const [cmd, argv] = user ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', LANG: 'C' } });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (err) => { clearTimeout(timer); reject(err); });
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${bin.split('/').pop()} ${args[0] ?? ''} exited with ${code}:\n${out.slice(-2000)}`));
    });
  });
}

/** Starts a fresh cluster; the caller must `stop()` it (which also removes its directory). */
export async function launchPostgres(opts: { superuser?: string } = {}): Promise<PostgresServer> {
  const bin = postgresBin();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'aegis-pg-'));
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  const superuser = opts.superuser ?? 'aegis_root';
  const password = randomBytes(18).toString('base64url');
  writeFileSync(join(dir, 'pwfile'), `${password}\n`, { mode: 0o600 });
  if (user) for (const p of [dir, sock, join(dir, 'pwfile')]) chownSync(p, user.uid, user.gid);
  try {
    await run(join(bin, 'initdb'), [
      '-D', data, '-U', superuser, `--pwfile=${join(dir, 'pwfile')}`, '--auth-local=scram-sha-256', '--auth-host=scram-sha-256',
      '-E', 'UTF8', '--no-locale', '--no-sync',
    ], user, dir, 60_000);
    rmSync(join(dir, 'pwfile'));
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  let lastError: unknown = null;
  // The free port can be taken between the check and the bind: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    // A test database: durability off (fsync) for speed; loopback only; the socket inside the temp dir.
    appendFileSync(join(data, 'postgresql.auto.conf'), [
      `listen_addresses = '127.0.0.1'`, `port = ${port}`, `unix_socket_directories = '${sock}'`,
      'fsync = off', 'synchronous_commit = off', 'full_page_writes = off', 'max_connections = 100', 'shared_buffers = 32MB',
      '',
    ].join('\n'));
    try {
      await run(join(bin, 'pg_ctl'), ['start', '-w', '-t', '60', '-D', data, '-l', join(dir, 'server.log')], user, dir, 90_000);
    } catch (err) {
      lastError = new Error(`${(err as Error).message}\n${existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000) : ''}`);
      continue;
    }
    return connected(bin, user, dir, data, port, superuser, password);
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

function connected(bin: string, user: { uid: number; gid: number } | null, dir: string, data: string, port: number, superuser: string, password: string): PostgresServer {
  const admin = new pg.Pool({ host: '127.0.0.1', port, user: superuser, password, database: 'postgres', max: 4 });
  admin.on('error', () => undefined);
  let stopped: Promise<void> | null = null;
  return {
    port, superuser, password, dir,
    url: `postgresql://${superuser}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    query: (sql, params) => admin.query(sql, params as unknown[]),
    async connect(u, pw, database = 'postgres') {
      const c = new pg.Client({ host: '127.0.0.1', port, user: u, password: pw, database, connectionTimeoutMillis: 10_000 });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    },
    async login(u, pw) {
      try {
        const c = await this.connect(u, pw);
        await c.end();
        return true;
      } catch (err) {
        return (err as { code?: string }).code ?? String(err);
      }
    },
    async roleExists(name) {
      return (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount === 1;
    },
    stop() {
      stopped ??= (async () => {
        await admin.end().catch(() => undefined);
        await run(join(bin, 'pg_ctl'), ['stop', '-m', 'fast', '-w', '-t', '60', '-D', data], user, dir, 90_000).catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

let shared: Promise<PostgresServer> | null = null;

/** One cluster per test file (startup costs 1–2 s), stopped and removed when the file ends. */
export function startPostgres(): Promise<PostgresServer> {
  shared ??= (async () => {
    const { onCleanup } = await import('./cleanup.js');
    const server = await launchPostgres();
    onCleanup(() => server.stop());
    return server;
  })();
  return shared;
}

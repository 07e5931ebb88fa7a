// Dynamic PostgreSQL credentials through the whole stack: `GET database/creds/:role` (CREATE ROLE + GRANT group in one
// transaction, a lease recorded in the barrier, two audit entries) from concurrent keep-alive HTTPS clients, then
// every issued lease revoked with `PUT sys/leases/revoke` (sessions terminated, privileges revoked, DROP ROLE). In
// the same run, the anchor: raw `CREATE ROLE` / `DROP ROLE` pairs over one pg connection to the same server.
// Prints one JSON line. PostgreSQL is a real server from Debian's binaries on a loopback port (test/helpers/postgres.ts).
// Flags: --seconds N (per phase, default 10), --clients N (8), --max N (issued credentials at most, 20000).
import { Agent, request } from 'node:https';
import pg from 'pg';
import { launchPostgres } from '../test/helpers/postgres.js';
import { startBenchServer } from './lib/aegis-server.js';
import { flag } from './lib/args.js';
import { round, type LoadResult } from './lib/load.js';

const SECONDS = flag('seconds', 10);
const CLIENTS = flag('clients', 8);
const MAX = flag('max', 20_000);
const ANCHOR_SECONDS = Math.min(SECONDS, 5);

type Phase = LoadResult;

/**
 * Closed loop: `clients` workers, each sending its next call when the previous answer arrives, until `seconds`
 * pass or `count` calls have been made. `call(i)` returns the request; `onBody` sees each 2xx body.
 */
async function closedLoop(base: URL, ca: string | undefined, seconds: number, count: number,
  call: (i: number) => { method: string; path: string; body?: string }, onBody?: (body: any) => void): Promise<Phase> {
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS, ca });
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  let firstError = '';
  const deadline = performance.now() + seconds * 1000;
  const once = (c: { method: string; path: string; body?: string }) => new Promise<{ status: number; text: string }>((resolve) => {
    const headers: Record<string, string> = { 'x-vault-token': token };
    if (c.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(c.body));
    }
    const req = request(new URL(`/v1/${c.path}`, base), { method: c.method, headers, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', (err) => resolve({ status: 0, text: err.message }));
    req.end(c.body);
  });
  const worker = async () => {
    while (performance.now() < deadline && next < count) {
      const c = call(next++);
      const t0 = performance.now();
      const { status, text } = await once(c);
      const ms = performance.now() - t0;
      if (status >= 200 && status < 300) {
        latencies.push(ms);
        if (onBody) onBody(JSON.parse(text));
      } else {
        errors++;
        firstError ||= `${status} ${text.slice(0, 300)}`;
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, worker));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  if (firstError) process.stderr.write(`first error: ${firstError}\n`);
  latencies.sort((a, b) => a - b);
  const q = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : NaN);
  return {
    ops: latencies.length, errors, seconds: round(elapsed, 2), ops_per_s: round(latencies.length / elapsed, 0),
    p50_ms: round(q(0.5), 2), p99_ms: round(q(0.99), 2), max_ms: round(latencies[latencies.length - 1] ?? NaN, 2),
  };
}

let token = '';
const db = await launchPostgres();
const { server, api, rootToken, stop } = await startBenchServer('dbcreds');
try {
  token = rootToken;
  await db.query('CREATE TABLE bench_items (id int PRIMARY KEY, name text)');
  // Users get their rights through a group role, as PostgreSQL advises for many users: a direct GRANT per user
  // adds an entry to the table's ACL, one catalog row without TOAST, which is full at ~680 users ("row is too big").
  await db.query('CREATE ROLE bench_reader NOLOGIN');
  await db.query('GRANT SELECT ON bench_items TO bench_reader');
  await db.query(`CREATE ROLE bench_root WITH LOGIN SUPERUSER PASSWORD ${pg.escapeLiteral(db.password)}`);
  await api.ok('POST', 'sys/mounts/database', { body: { type: 'database' } });
  await api.ok('POST', 'database/config/pg', { body: {
    plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${db.port}/postgres`,
    username: 'bench_root', password: db.password, allowed_roles: ['bench'], max_open_connections: CLIENTS,
  } });
  await api.ok('POST', 'database/roles/bench', { body: {
    db_name: 'pg', default_ttl: '1h',
    creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`, 'GRANT bench_reader TO "{{name}}";'],
  } });

  // A short warm-up (JIT, pools, TLS sessions), revoked before measuring.
  const warm: string[] = [];
  await closedLoop(server.address, server.ca, 2, 200, () => ({ method: 'GET', path: 'database/creds/bench' }), (b) => warm.push(b.lease_id));
  await closedLoop(server.address, server.ca, 30, warm.length, (i) => ({ method: 'PUT', path: 'sys/leases/revoke', body: JSON.stringify({ lease_id: warm[i] }) }));

  const leases: string[] = [];
  const issue = await closedLoop(server.address, server.ca, SECONDS, MAX, () => ({ method: 'GET', path: 'database/creds/bench' }), (b) => leases.push(b.lease_id));
  // Every issued lease is revoked: the time bound is generous so nothing is left, and the count bound is the list.
  const revoke = await closedLoop(server.address, server.ca, Math.max(SECONDS, 60), leases.length,
    (i) => ({ method: 'PUT', path: 'sys/leases/revoke', body: JSON.stringify({ lease_id: leases[i] }) }));
  const left = (await db.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-root-bench-%'")).rows[0].n as number;

  // The anchor: what PostgreSQL itself does for the minimum of this work, one connection, no Aegis.
  const c = await db.connect(db.superuser, db.password);
  let pairs = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ANCHOR_SECONDS * 1000 && pairs < 1_000_000) {
    const name = pg.escapeIdentifier(`anchor-${pairs}`);
    await c.query(`CREATE ROLE ${name} WITH LOGIN PASSWORD 'Anchor-password-0123456789abcdef'`);
    await c.query(`DROP ROLE ${name}`);
    pairs++;
  }
  const anchor = pairs / ((performance.now() - t0) / 1000);
  await c.end();

  const line = {
    bench: 'dbcreds',
    transport: 'https (TLS 1.3, keep-alive)',
    audit: 'file device on',
    postgres: (await db.query('SHOW server_version')).rows[0].server_version,
    clients: CLIENTS,
    seconds: SECONDS,
    issued_per_s: issue.ops_per_s,
    revoked_per_s: revoke.ops_per_s,
    issue,
    revoke,
    roles_left_after_revoke: left,
    anchor: { create_drop_role_pairs_per_s: round(anchor, 0), connection: 'one pg connection, superuser, loopback' },
    ratio_issue_revoke_cycle_to_anchor: round(1 / (1 / issue.ops_per_s + 1 / revoke.ops_per_s) / anchor, 4),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await stop();
  await db.stop();
}

// KV v2 over HTTPS with a file audit device on: reads, then writes, from 32 concurrent keep-alive clients,
// and in the same run the raw better-sqlite3 point-read rate of the same rows (the storage anchor).
// Prints one JSON line. Target on 2 cores: reads >= 5,000/s with p99 <= 5 ms.
// Flags: --seconds N (default 10), --clients N (32), --keys N (1000), --reads-only.
// BENCH_SERVER_NODE_ARGS / BENCH_SERVER_WRAPPER / BENCH_SERVER_LOG profile or trace the server side (lib/server-process.ts).
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { flag } from './lib/args.js';
import { round } from './lib/load.js';
import { load } from './lib/wrk.js';
import { startBenchServer } from './lib/aegis-server.js';

const SECONDS = flag('seconds', 10);
const CLIENTS = flag('clients', 32);
const KEYS = flag('keys', 1000);

const { server, dir, api, rootToken, stop } = await startBenchServer('kv');
try {
  const value = { username: 'app', password: 'x'.repeat(48), url: 'postgres://db.internal:5432/app' };
  for (let i = 0; i < KEYS; i++) await api.ok('PUT', `secret/data/bench/k${i}`, { body: { data: value } });

  const headers = { 'x-vault-token': rootToken };
  const target = { base: server.address, ca: server.ca, clients: CLIENTS };
  const readCalls = Array.from({ length: KEYS }, (_, i) => ({ method: 'GET', path: `/v1/secret/data/bench/k${(i * 7919) % KEYS}`, headers }));
  const body = JSON.stringify({ data: value });
  const writeCalls = Array.from({ length: KEYS }, (_, i) => ({ method: 'POST', path: `/v1/secret/data/bench/w${i}`, headers, body }));
  // A short warm-up so the JIT has compiled the hot paths before anything is measured.
  await load(target, 2, readCalls);
  const reads = await load(target, SECONDS, readCalls);
  const writes = process.argv.includes('--reads-only') ? null : await load(target, SECONDS, writeCalls);

  // The anchor: the same rows read straight from the SQLite file, one point read at a time, on one core.
  const db = new Database(join(dir, 'aegis.db'), { readonly: true });
  // Exactly the rows a read of bench/k<i> touches: its metadata document and its version (see kv-store.ts layout).
  const metaRows = (db.prepare("SELECT key FROM kv WHERE key LIKE 'logical/%/metadata/bench/k%'").all() as { key: string }[]).map((r) => r.key);
  const mount = metaRows[0]!.slice(0, metaRows[0]!.indexOf('/metadata/') + 1);
  const keys = [...metaRows, ...Array.from({ length: KEYS }, (_, i) => `${mount}versions/${createHash('sha256').update(`bench/k${i}`).digest('hex')}/1`)];
  if (keys.length !== 2 * KEYS) throw new Error(`expected ${2 * KEYS} rows, found ${keys.length}`);
  const get = db.prepare('SELECT value FROM kv WHERE key = ?');
  let n = 0;
  let missing = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    for (let j = 0; j < 1000; j++) if (!get.get(keys[(n++ * 7919) % keys.length]!)) missing++;
  }
  if (missing > 0) throw new Error(`${missing} anchor reads found no row: the storage layout changed`);
  const sqliteReads = n / ((performance.now() - t0) / 1000);
  db.close();

  const line = {
    bench: 'kv',
    transport: 'https (TLS 1.3, keep-alive)',
    audit: 'file device on',
    clients: CLIENTS,
    seconds: SECONDS,
    reads,
    writes,
    anchor: { sqlite_point_reads_per_s: round(sqliteReads, 0), rows: keys.length },
    ratio_reads_to_sqlite: round(reads.ops_per_s / sqliteReads, 4),
    target: { reads_per_s: 5000, reads_p99_ms: 5 },
    target_met: reads.ops_per_s >= 5000 && reads.p99_ms <= 5 && reads.errors === 0,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await stop();
}

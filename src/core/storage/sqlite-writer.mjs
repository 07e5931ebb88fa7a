// The SQLite write thread (worker_threads). better-sqlite3 is synchronous, so on the main thread every commit's
// fsync stalled every request in flight. Here the writes run on their own connection, off the event loop, and
// every transaction that arrives while a commit is running is committed in the next one, with one fsync (group
// commit); each keeps its own atomicity through a SAVEPOINT. JavaScript on purpose: the thread starts in ~30 ms
// without the TypeScript loader. The protocol's types are the JSDoc typedefs below (sqlite.ts imports them), and
// `npm run typecheck` checks this file through them (allowJs + @ts-check).
// @ts-check
import Database from 'better-sqlite3';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * @typedef {{ type: 'put'; key: string; value: Uint8Array } | { type: 'delete'; key: string } | { type: 'check'; key: string; version: number }} Op
 * @typedef {{ id: number; ops: Op[] }} Txn
 * @typedef {{ index: number; key: string; op: 'put' | 'delete' }} Change
 * @typedef {{ id: number; index: number; changes: Change[] } | { id: number; conflict: string } | { id: number; error: string }} Result
 */

/** @type {{ path: string; synchronous: 'FULL' | 'NORMAL'; retain: number }} */
const { path, synchronous, retain } = workerData;
const port = /** @type {import('node:worker_threads').MessagePort} */ (parentPort);

const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${synchronous}`);
db.pragma('busy_timeout = 5000');

const stmt = {
  version: db.prepare('SELECT version FROM kv WHERE key = ?').pluck(),
  put: db.prepare('INSERT INTO kv (key, value, version) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version'),
  del: db.prepare('DELETE FROM kv WHERE key = ?'),
  change: db.prepare('INSERT INTO changes (idx, key, op) VALUES (?, ?, ?)'),
  compact: db.prepare('DELETE FROM changes WHERE idx <= ?'),
  begin: db.prepare('BEGIN IMMEDIATE'),
  commit: db.prepare('COMMIT'),
  rollback: db.prepare('ROLLBACK'),
  savepoint: db.prepare('SAVEPOINT txn'),
  rollbackTo: db.prepare('ROLLBACK TO txn'),
  release: db.prepare('RELEASE txn'),
};

let index = /** @type {number} */ (db.prepare('SELECT coalesce(max(idx), 0) FROM changes').pluck().get());
let writesSinceCompaction = 0;
/** Transactions received since the last commit started. @type {Txn[]} */
let queue = [];
let scheduled = false;
let closed = false;
/** Most transactions in one commit: bounds how long the first of them waits for the last. */
const BATCH_MAX = 512;

class Conflict extends Error {
  /** @param {string} key */
  constructor(key) {
    super(`conflict on ${key}`);
    this.key = key;
  }
}

/**
 * Applies one transaction's ops; throws Conflict when a check fails. Returns the changes it made.
 * @param {Op[]} ops
 * @returns {Change[]}
 */
function apply(ops) {
  for (const op of ops) {
    if (op.type === 'check' && (stmt.version.get(op.key) ?? 0) !== op.version) throw new Conflict(op.key);
  }
  /** @type {Change[]} */
  const made = [];
  for (const op of ops) {
    if (op.type === 'check') continue;
    if (op.type === 'put') {
      // Structured clone turns a Buffer into a plain Uint8Array; better-sqlite3 binds Buffers as BLOBs.
      const value = Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength);
      stmt.put.run(op.key, value, index + 1);
    } else if (stmt.del.run(op.key).changes === 0) {
      continue;
    }
    index += 1;
    stmt.change.run(index, op.key, op.type);
    made.push({ index, key: op.key, op: op.type });
  }
  return made;
}

function commitBatch() {
  scheduled = false;
  const batch = queue.splice(0, BATCH_MAX);
  if (queue.length > 0) schedule();
  const before = index;
  /** @type {Result[]} */
  const results = [];
  try {
    stmt.begin.run();
    for (const t of batch) {
      const start = index;
      stmt.savepoint.run();
      try {
        const changes = apply(t.ops);
        stmt.release.run();
        results.push({ id: t.id, index, changes });
      } catch (err) {
        stmt.rollbackTo.run();
        stmt.release.run();
        index = start;
        results.push(err instanceof Conflict ? { id: t.id, conflict: err.key } : { id: t.id, error: messageOf(err) });
      }
    }
    writesSinceCompaction += index - before;
    // In the same commit, so a reader that saw these writes also sees the feed compacted.
    if (writesSinceCompaction >= Math.max(1000, retain / 10)) compact();
    stmt.commit.run();
  } catch (err) {
    // The commit itself failed (disk full, I/O error): nothing of this batch is stored.
    if (db.inTransaction) stmt.rollback.run();
    index = before;
    writesSinceCompaction = 0;
    port.postMessage(batch.map((t) => ({ id: t.id, error: messageOf(err) })));
    return;
  }
  port.postMessage(results);
}

/** @param {unknown} err */
function messageOf(err) {
  return err instanceof Error ? err.message : String(err);
}

function compact() {
  writesSinceCompaction = 0;
  // Keep the newest entries, and always at least the last one, so the current index survives a restart.
  const keepFrom = index - retain;
  if (keepFrom > 0) stmt.compact.run(Math.min(keepFrom, index - 1));
}

function schedule() {
  if (scheduled || closed) return;
  scheduled = true;
  // After every message already delivered in this turn has been queued: they share one commit.
  setImmediate(commitBatch);
}

port.on('message', (/** @type {Txn | { type: 'close' }} */ m) => {
  if ('type' in m) {
    closed = true;
    while (queue.length > 0) commitBatch();
    db.close();
    // The main thread stops this thread when it reads this, after every answer above (messages keep their order).
    port.postMessage({ closed: true });
    return;
  }
  queue.push(m);
  schedule();
});

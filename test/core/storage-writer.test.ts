import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TxnConflictError } from '../../src/core/errors.js';
import { SqliteStorage } from '../../src/core/storage/index.js';
import { tempDir } from '../helpers/temp.js';

// The SQLite driver commits on a write thread: concurrent transactions share one commit, each still all or
// nothing, answered in commit order, and nothing sent before close() is lost.

const dir = tempDir('sqlite-writer');

describe('sqlite write thread', () => {
  it('transactions sent together commit together, yet a conflicting one leaves no trace and the others stand', async () => {
    const s = new SqliteStorage({ path: join(dir, 'batch.db'), synchronous: 'normal' });
    const v0 = await s.put('acct/a', Buffer.from('0'));
    // Sent in one turn, so they reach the thread together: the middle one fails its check after the first won.
    const first = s.txn([{ type: 'check', key: 'acct/a', version: v0 }, { type: 'put', key: 'acct/a', value: Buffer.from('1') }, { type: 'put', key: 'acct/log1', value: Buffer.from('x') }]);
    const loser = s.txn([{ type: 'put', key: 'acct/log2', value: Buffer.from('y') }, { type: 'check', key: 'acct/a', version: v0 }, { type: 'put', key: 'acct/a', value: Buffer.from('2') }]);
    const other = s.txn([{ type: 'put', key: 'acct/b', value: Buffer.from('b') }]);
    const [r1, r2, r3] = await Promise.allSettled([first, loser, other]);
    assert.equal(r1.status, 'fulfilled');
    assert.equal(r2.status, 'rejected');
    assert.ok((r2 as PromiseRejectedResult).reason instanceof TxnConflictError);
    assert.equal(r3.status, 'fulfilled');
    assert.equal((await s.get('acct/a'))!.value.toString(), '1');
    assert.equal(await s.get('acct/log2'), null, 'the losing transaction wrote nothing, not even its ops before the check');
    assert.equal((await s.get('acct/b'))!.value.toString(), 'b');
    // Indexes are contiguous: the rolled-back transaction consumed none.
    const page = await s.changes(v0);
    assert.deepEqual(page.changes.map((c) => c.key), ['acct/a', 'acct/log1', 'acct/b']);
    assert.deepEqual(page.changes.map((c) => c.index), [v0 + 1, v0 + 2, v0 + 3]);
    await s.close();
  });

  it('many concurrent writers are answered in commit order with distinct indexes, and listeners hear them in order', async () => {
    const s = new SqliteStorage({ path: join(dir, 'order.db'), synchronous: 'normal' });
    const heard: number[] = [];
    s.subscribe((changes) => { for (const c of changes) heard.push(c.index); });
    const resolvedOrder: number[] = [];
    const writes = Array.from({ length: 600 }, (_, i) => s.put(`k/${i}`, Buffer.from(String(i))).then((idx) => { resolvedOrder.push(idx); return idx; }));
    const indexes = await Promise.all(writes);
    assert.equal(new Set(indexes).size, 600);
    assert.deepEqual(resolvedOrder, [...resolvedOrder].sort((a, b) => a - b), 'answers arrive in commit order');
    assert.deepEqual(heard, [...heard].sort((a, b) => a - b));
    assert.equal(heard.length, 600);
    assert.equal(await s.currentIndex(), Math.max(...indexes));
    await s.close();
  });

  it('commits on another thread: a write lands while this thread is busy and never yields to its event loop', async () => {
    const path = join(dir, 'thread.db');
    const s = new SqliteStorage({ path, synchronous: 'full' });
    await s.put('warm/up', Buffer.from('x'));
    const reader = new Database(path, { readonly: true });
    const seen = reader.prepare("SELECT 1 FROM kv WHERE key = 'busy/1'").pluck();
    const write = s.put('busy/1', Buffer.from('y'));
    // A driver that commits on the calling thread has committed by now (before put() returns its promise).
    assert.equal(seen.get(), undefined, 'not committed synchronously by the caller');
    // Spin without yielding: only a commit made by another thread can become visible.
    const deadline = Date.now() + 5000;
    while (seen.get() === undefined && Date.now() < deadline) { /* busy */ }
    assert.equal(seen.get(), 1, 'committed while the event loop was blocked');
    await write;
    reader.close();
    await s.close();
  });

  it('close() commits everything already sent before it returns, and a write after close is refused', async () => {
    const path = join(dir, 'drain.db');
    const s = new SqliteStorage({ path, synchronous: 'normal' });
    const sent = Array.from({ length: 300 }, (_, i) => s.put(`drain/${i}`, Buffer.from(String(i))));
    await s.close();
    const results = await Promise.allSettled(sent);
    assert.ok(results.every((r) => r.status === 'fulfilled'), 'every write sent before close was answered');
    await assert.rejects(s.put('drain/late', Buffer.from('x')), /closed/);
    const db = new Database(path, { readonly: true });
    assert.equal((db.prepare("SELECT count(*) AS n FROM kv WHERE key LIKE 'drain/%'").get() as { n: number }).n, 300);
    db.close();
  });

  it('a write the database refuses is rejected with its reason and does not take the store down', async () => {
    const path = join(dir, 'refuse.db');
    const s = new SqliteStorage({ path, synchronous: 'normal' });
    await s.put('ok/1', Buffer.from('1'));
    // A trigger stands in for a storage-level failure (constraint, I/O) inside one transaction.
    const db = new Database(path);
    db.exec("CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key LIKE 'bad/%' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END");
    db.close();
    const [bad, good] = await Promise.allSettled([s.put('bad/1', Buffer.from('x')), s.put('ok/2', Buffer.from('2'))]);
    assert.equal(bad.status, 'rejected');
    assert.match(String((bad as PromiseRejectedResult).reason), /storage write failed: refused by trigger/);
    assert.equal(good.status, 'fulfilled', 'the other transaction of the same commit stands');
    assert.equal(await s.get('bad/1'), null);
    assert.equal((await s.get('ok/2'))!.value.toString(), '2');
    await s.close();
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CachedStorage, SqliteStorage } from '../../src/core/storage/index.js';
import { migrateKvToRowid } from '../../src/core/storage/sqlite.js';
import { storageConformance } from './storage-conformance.js';
import { tempDir } from '../helpers/temp.js';

const dir = tempDir('sqlite');
storageConformance('sqlite', {
  open: async () => new SqliteStorage({ path: join(dir, 'conformance.db'), synchronous: 'normal' }),
  reopen: async (prev) => {
    await prev.close();
    return new SqliteStorage({ path: join(dir, 'conformance.db'), synchronous: 'normal' });
  },
});

describe('sqlite driver', () => {
  it('compacts the change feed and reports a truncated read', async () => {
    const s = new SqliteStorage({ path: join(dir, 'compact.db'), retainChanges: 100, synchronous: 'normal' });
    for (let i = 0; i < 1500; i++) await s.put(`k/${i % 10}`, Buffer.from('x'));
    const page = await s.changes(0, 10);
    assert.equal(page.truncated, true);
    const recent = await s.changes((await s.currentIndex()) - 5);
    assert.equal(recent.truncated, false);
    assert.equal(recent.changes.length, 5);
    await s.close();
  });
});

storageConformance('sqlite behind the read cache', {
  open: async () => new CachedStorage(new SqliteStorage({ path: join(dir, 'cached.db'), synchronous: 'normal' })),
  reopen: async (prev) => {
    await prev.close();
    return new CachedStorage(new SqliteStorage({ path: join(dir, 'cached.db'), synchronous: 'normal' }));
  },
});

describe('read cache', () => {
  it('serves repeated reads from memory and never returns a value older than the last committed write', async () => {
    const inner = new SqliteStorage({ path: join(dir, 'cache2.db'), synchronous: 'normal' });
    const s = new CachedStorage(inner);
    await s.put('c/k', Buffer.from('v1'));
    assert.equal((await s.get('c/k'))?.value.toString(), 'v1');
    assert.equal(s.size, 1);
    await s.put('c/k', Buffer.from('v2'));
    assert.equal((await s.get('c/k'))?.value.toString(), 'v2');
    await s.txn([{ type: 'delete', key: 'c/k' }]);
    assert.equal(await s.get('c/k'), null);
    await s.close();
  });

  it('a write that commits while a miss is being read is not hidden by caching the older value', async () => {
    const inner = new SqliteStorage({ path: join(dir, 'cache3.db'), synchronous: 'normal' });
    const s = new CachedStorage(inner);
    await inner.put('r/k', Buffer.from('old'));
    // Start a read (a miss), then commit a write before its continuation runs.
    const reading = s.get('r/k');
    await inner.put('r/k', Buffer.from('new'));
    assert.equal((await reading)?.value.toString(), 'old');
    assert.equal((await s.get('r/k'))?.value.toString(), 'new', 'the stale read was not cached');
    await s.close();
  });

  it('changes reported by the driver (another server) evict what they touch', async () => {
    const inner = new SqliteStorage({ path: join(dir, 'cache4.db'), synchronous: 'normal' });
    const s = new CachedStorage(inner);
    await s.put('o/k', Buffer.from('mine'));
    await s.get('o/k');
    // Another writer on the same driver: the cache learns of it only through the change feed.
    await inner.put('o/k', Buffer.from('theirs'));
    assert.equal((await s.get('o/k'))?.value.toString(), 'theirs');
    await s.close();
  });

  it('stays within its byte budget', async () => {
    const inner = new SqliteStorage({ path: join(dir, 'cache5.db'), synchronous: 'normal' });
    const s = new CachedStorage(inner, 64 * 1024);
    for (let i = 0; i < 200; i++) await s.put(`b/${i}`, Buffer.alloc(900, 1));
    for (let i = 0; i < 200; i++) await s.get(`b/${i}`);
    assert.ok(s.size < 70, `cached ${s.size} entries of ~1 KiB in a 64 KiB budget`);
    assert.equal((await s.get('b/3'))?.value.length, 900);
    await s.close();
  });
});

describe('sqlite file format', () => {
  it('a file whose kv table is WITHOUT ROWID (made before 2026-11-23) is rebuilt at open, keeping every key, value and version', async () => {
    const path = join(dir, 'old-format.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(`
      CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE changes (idx INTEGER PRIMARY KEY, key TEXT NOT NULL, op TEXT NOT NULL);
    `);
    const put = old.prepare('INSERT INTO kv VALUES (?, ?, ?)');
    const change = old.prepare('INSERT INTO changes VALUES (?, ?, ?)');
    const rows = Array.from({ length: 300 }, (_, i) => ({ key: `app/${String(i).padStart(3, '0')}`, value: Buffer.alloc(i * 13, i), version: i + 1 }));
    old.transaction(() => { for (const r of rows) { put.run(r.key, r.value, r.version); change.run(r.version, r.key, 'put'); } })();
    old.close();

    const s = new SqliteStorage({ path, synchronous: 'normal' });
    for (const r of rows) {
      const got = await s.get(r.key);
      assert.ok(got && got.value.equals(r.value) && got.version === r.version, r.key);
    }
    assert.equal((await s.list('app/')).length, 300);
    assert.equal(await s.currentIndex(), 300, 'the change index continues where it was');
    assert.equal(await s.put('app/new', Buffer.from('n')), 301);
    await s.close();

    const check = new Database(path);
    const sql = check.prepare("SELECT sql FROM sqlite_master WHERE name = 'kv'").pluck().get() as string;
    assert.doesNotMatch(sql, /WITHOUT ROWID/i);
    assert.equal(migrateKvToRowid(check), false, 'a second open has nothing to rebuild');
    assert.equal(check.prepare('PRAGMA integrity_check').pluck().get(), 'ok');
    check.close();
  });
});

// The storage contract, as a suite any driver must pass: call `storageConformance(name, open)` from the driver's
// own test file. `open` returns a fresh, empty store; `reopen` (when given) opens the same store again.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Storage } from '../../src/core/storage/index.js';
import { TxnConflictError } from '../../src/core/errors.js';

export interface ConformanceTarget {
  open(): Promise<Storage>;
  reopen?(previous: Storage): Promise<Storage>;
}

const b = (s: string) => Buffer.from(s);

export function storageConformance(name: string, target: ConformanceTarget): void {
  describe(`storage contract: ${name}`, () => {
    let s: Storage;
    before(async () => { s = await target.open(); });
    after(async () => { await s.close(); });

    it('get of a missing key is null', async () => {
      assert.equal(await s.get('missing/key'), null);
    });

    it('put then get returns the same bytes and a version equal to the write index', async () => {
      const idx = await s.put('a/one', b('1'));
      const e = await s.get('a/one');
      assert.ok(e);
      assert.deepEqual(e.value, b('1'));
      assert.equal(e.version, idx);
      assert.equal(await s.currentIndex(), idx);
    });

    it('binary values round-trip exactly', async () => {
      const bytes = Buffer.from([0, 255, 1, 254, 0, 0, 10, 13]);
      await s.put('bin/x', bytes);
      assert.deepEqual((await s.get('bin/x'))?.value, bytes);
    });

    it('overwrite replaces the value and raises the version', async () => {
      const first = await s.put('ow/k', b('a'));
      const second = await s.put('ow/k', b('b'));
      assert.ok(second > first);
      const e = await s.get('ow/k');
      assert.deepEqual(e?.value, b('b'));
      assert.equal(e?.version, second);
    });

    it('delete removes the key and returns null when nothing was there', async () => {
      await s.put('del/k', b('x'));
      assert.notEqual(await s.delete('del/k'), null);
      assert.equal(await s.get('del/k'), null);
      assert.equal(await s.delete('del/k'), null);
    });

    it('list returns direct children only, folders with a trailing slash, sorted', async () => {
      await s.put('l/b', b('1'));
      await s.put('l/a', b('1'));
      await s.put('l/c/d', b('1'));
      await s.put('l/c/e/f', b('1'));
      await s.put('l/c', b('1'));
      await s.put('lx/z', b('1'));
      assert.deepEqual(await s.list('l/'), ['a', 'b', 'c', 'c/']);
      assert.deepEqual(await s.list('l/c/'), ['d', 'e/']);
      assert.deepEqual(await s.list('nothing/'), []);
      const top = await s.list('');
      assert.ok(top.includes('l/') && top.includes('lx/'));
    });

    it('list does not confuse a prefix with a longer sibling name', async () => {
      await s.put('p/ab', b('1'));
      await s.put('p/a/x', b('1'));
      assert.deepEqual(await s.list('p/a/'), ['x']);
    });

    it('refuses malformed keys', async () => {
      await assert.rejects(s.put('', b('x')));
      await assert.rejects(s.put('/abs', b('x')));
      await assert.rejects(s.put('a//b', b('x')));
      await assert.rejects(s.put('a\0b', b('x')));
      await assert.rejects(s.list('noslash'));
    });

    it('txn applies every op atomically', async () => {
      await s.put('t/old', b('o'));
      const idx = await s.txn([
        { type: 'put', key: 't/x', value: b('1') },
        { type: 'put', key: 't/y', value: b('2') },
        { type: 'delete', key: 't/old' },
      ]);
      assert.equal((await s.get('t/x'))?.value.toString(), '1');
      assert.equal((await s.get('t/y'))?.value.toString(), '2');
      assert.equal(await s.get('t/old'), null);
      assert.equal(await s.currentIndex(), idx);
    });

    it('txn with a failing check writes nothing and throws TxnConflictError', async () => {
      const v = await s.put('c/k', b('v1'));
      const before = await s.currentIndex();
      await assert.rejects(
        s.txn([
          { type: 'put', key: 'c/other', value: b('x') },
          { type: 'check', key: 'c/k', version: v - 1 },
          { type: 'put', key: 'c/k', value: b('v2') },
        ]),
        TxnConflictError,
      );
      assert.equal(await s.get('c/other'), null);
      assert.equal((await s.get('c/k'))?.value.toString(), 'v1');
      assert.equal(await s.currentIndex(), before);
    });

    it('txn check with version 0 means the key must not exist', async () => {
      await s.txn([{ type: 'check', key: 'c/new', version: 0 }, { type: 'put', key: 'c/new', value: b('1') }]);
      await assert.rejects(s.txn([{ type: 'check', key: 'c/new', version: 0 }, { type: 'put', key: 'c/new', value: b('2') }]), TxnConflictError);
      const v = (await s.get('c/new'))!.version;
      await s.txn([{ type: 'check', key: 'c/new', version: v }, { type: 'put', key: 'c/new', value: b('3') }]);
      assert.equal((await s.get('c/new'))?.value.toString(), '3');
    });

    it('concurrent check-and-set: exactly one of many racing writers wins', async () => {
      const v = await s.put('race/k', b('0'));
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => s.txn([{ type: 'check', key: 'race/k', version: v }, { type: 'put', key: 'race/k', value: b(String(i + 1)) }])),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    });

    it('the change feed is ordered, monotonic and names every write', async () => {
      const start = await s.currentIndex();
      await s.put('feed/a', b('1'));
      await s.put('feed/b', b('1'));
      await s.delete('feed/a');
      const page = await s.changes(start);
      assert.deepEqual(page.changes.map((c) => [c.key, c.op]), [['feed/a', 'put'], ['feed/b', 'put'], ['feed/a', 'delete']]);
      const idx = page.changes.map((c) => c.index);
      assert.deepEqual(idx, [...idx].sort((x, y) => x - y));
      assert.equal(new Set(idx).size, idx.length);
      assert.equal(page.index, idx[idx.length - 1]);
      assert.equal(page.truncated, false);
      const later = await s.changes(idx[1]!);
      assert.deepEqual(later.changes.map((c) => c.key), ['feed/a']);
    });

    it('changes honours its limit', async () => {
      const start = await s.currentIndex();
      for (let i = 0; i < 5; i++) await s.put(`lim/${i}`, b('1'));
      const page = await s.changes(start, 2);
      assert.equal(page.changes.length, 2);
    });

    it('subscribers hear committed writes, and nothing after unsubscribing', async () => {
      const heard: string[] = [];
      const off = s.subscribe((cs) => { for (const c of cs) heard.push(`${c.op}:${c.key}`); });
      await s.txn([{ type: 'put', key: 'sub/a', value: b('1') }, { type: 'put', key: 'sub/b', value: b('1') }]);
      await assert.rejects(s.txn([{ type: 'check', key: 'sub/a', version: 0 }, { type: 'put', key: 'sub/c', value: b('1') }]));
      off();
      await s.put('sub/d', b('1'));
      assert.deepEqual(heard, ['put:sub/a', 'put:sub/b']);
    });

    it('a subscriber that throws does not fail the write', async () => {
      const off = s.subscribe(() => { throw new Error('boom'); });
      await s.put('sub/throw', b('1'));
      off();
      assert.ok(await s.get('sub/throw'));
    });

    if (target.reopen) {
      it('data and the change index survive a reopen', async () => {
        await s.put('persist/k', b('kept'));
        const idx = await s.currentIndex();
        s = await target.reopen!(s);
        assert.equal((await s.get('persist/k'))?.value.toString(), 'kept');
        assert.equal(await s.currentIndex(), idx);
        const next = await s.put('persist/k2', b('1'));
        assert.ok(next > idx);
      });
    }
  });
}

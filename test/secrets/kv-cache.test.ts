import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Barrier } from '../../src/core/barrier/index.js';
import { SqliteStorage } from '../../src/core/storage/index.js';
import { KvStore } from '../../src/secrets/kv/kv-store.js';
import { tempDir } from '../helpers/temp.js';

async function setup() {
  const storage = new SqliteStorage({ path: join(tempDir('kvcache'), 'a.db'), synchronous: 'normal' });
  const barrier = new Barrier(storage);
  await barrier.initialize(randomBytes(32));
  const prefix = 'logical/m/';
  const kv = new KvStore(barrier.view(prefix));
  storage.subscribe((cs) => cs.forEach((c) => c.key.startsWith(prefix) && kv.changed(c.key.slice(prefix.length))));
  return { storage, barrier, prefix, kv };
}

describe('the KV metadata cache', () => {
  it('a metadata read that races a write is not cached, so the write is seen at once', async () => {
    const { storage, barrier, prefix, kv } = await setup();
    await kv.write('k', { v: 1 }, undefined);
    const meta = structuredClone((await kv.metadata('k'))!);
    kv.clear();
    // A miss starts; before its continuation runs, another writer commits version 2's metadata.
    const reading = kv.metadata('k');
    await barrier.put(`${prefix}metadata/k`, { ...meta, current_version: 2 });
    assert.equal((await reading)!.current_version, 1);
    assert.equal((await kv.metadata('k'))!.current_version, 2, 'the raced read was not cached');
    await storage.close();
  });

  it('writes through the engine are seen by the next read, and a failed mutation leaves the cache intact', async () => {
    const { storage, kv } = await setup();
    await kv.write('w', { v: 1 }, undefined);
    assert.equal((await kv.metadata('w'))!.current_version, 1);
    await kv.write('w', { v: 2 }, 1);
    assert.equal((await kv.metadata('w'))!.current_version, 2);
    await assert.rejects(kv.write('w', { v: 3 }, 1), /check-and-set/);
    const m = (await kv.metadata('w'))!;
    assert.equal(m.current_version, 2);
    assert.deepEqual(Object.keys(m.versions), ['1', '2'], 'the refused write did not leak into the cached document');
    await storage.close();
  });
});

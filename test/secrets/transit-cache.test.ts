import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Barrier } from '../../src/core/barrier/index.js';
import { SqliteStorage } from '../../src/core/storage/index.js';
import { decrypt, encrypt } from '../../src/secrets/transit/ciphers.js';
import type { KeyPolicy } from '../../src/secrets/transit/key-types.js';
import { Keyring } from '../../src/secrets/transit/keyring.js';
import { tempDir } from '../helpers/temp.js';

// Two "servers" on one storage: each has its own Keyring (its own cache and write queue) over the same barrier,
// fed by the storage's change feed exactly as BackendContext.onChange feeds a mounted engine.
async function setup() {
  const storage = new SqliteStorage({ path: join(tempDir('transit-cache'), 'a.db'), synchronous: 'normal' });
  const barrier = new Barrier(storage);
  await barrier.initialize(randomBytes(32));
  const prefix = 'logical/transit/';
  const ring = () => {
    const k = new Keyring(barrier.view(prefix));
    storage.subscribe((cs) => cs.forEach((c) => c.key.startsWith(prefix) && k.changed(c.key.slice(prefix.length))));
    return k;
  };
  return { storage, barrier, prefix, a: ring(), b: ring() };
}

const newKey = (name: string) => ({ name, type: 'aes256-gcm96' as const, derived: false, exportable: false, autoRotatePeriod: 0 });

describe('the transit key cache with two servers on shared storage', () => {
  it('a rotation, a config change or a delete on one server is seen by the other at its next request', async () => {
    const { storage, a, b } = await setup();
    await a.create(newKey('shared'));
    const before = encrypt((await a.get('shared'))!, { plaintext: Buffer.from('x') });
    assert.equal(before.key_version, 1);
    assert.ok(await a.get('shared'), 'cached on a');

    await b.rotate('shared');
    const after = encrypt((await a.get('shared'))!, { plaintext: Buffer.from('x') });
    assert.equal(after.key_version, 2, 'a encrypts with the version b made');
    assert.equal(decrypt((await b.get('shared'))!, after.ciphertext).plaintext.toString(), 'x', 'b has the material a used');

    await b.update('shared', 'missing', (p) => { p.min_decryption_version = 2; });
    const onA = (await a.get('shared'))!;
    assert.equal(onA.view.min_decryption_version, 2);
    assert.throws(() => decrypt(onA, before.ciphertext), /too old/, 'a refuses v1 ciphertexts as soon as b raised the minimum');

    await b.update('shared', 'missing', (p) => { p.deletion_allowed = true; });
    await b.delete('shared');
    assert.equal(await a.get('shared'), null, 'a no longer has the deleted key');
    await storage.close();
  });

  it('a read that races a write is not cached, so the write is seen at once', async () => {
    const { storage, barrier, prefix, a } = await setup();
    await a.create(newKey('raced'));
    const doc = (await barrier.getJson<KeyPolicy>(`${prefix}policy/raced`))!.value;
    a.clear();
    // A miss starts; before its continuation runs, another server commits a rotated document (the put commits
    // synchronously, inside the call).
    const reading = a.get('raced');
    await barrier.put(`${prefix}policy/raced`, { ...doc, latest_version: 2, versions: { ...doc.versions, 2: doc.versions['1']! } });
    assert.equal((await reading)!.view.latest_version, 1, 'the racing read saw the old document');
    assert.equal((await a.get('raced'))!.view.latest_version, 2, 'and was not cached');
    await storage.close();
  });

  it('concurrent rotations from both servers never lose or reuse a version', async () => {
    const { storage, a, b } = await setup();
    await a.create(newKey('busy'));
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).rotate('busy')));
    const doc = (await a.document('busy'))!;
    assert.equal(doc.latest_version, 21);
    assert.deepEqual(Object.keys(doc.versions).map(Number).sort((x, y) => x - y), Array.from({ length: 21 }, (_, i) => i + 1));
    assert.equal(new Set(Object.values(doc.versions).map((v) => v.key)).size, 21, 'every version has its own key');
    // Concurrent config changes of different settings all land.
    await Promise.all([
      a.update('busy', 'missing', (p) => { p.deletion_allowed = true; }),
      b.update('busy', 'missing', (p) => { p.exportable = true; }),
      a.update('busy', 'missing', (p) => { p.min_decryption_version = 5; }),
      b.rotate('busy'),
    ]);
    const after = (await b.document('busy'))!;
    assert.deepEqual([after.deletion_allowed, after.exportable, after.min_decryption_version, after.latest_version], [true, true, 5, 22]);
    assert.equal((await a.get('busy'))!.view.latest_version, 22);
    await storage.close();
  });

  it('concurrent first uses of a new name create one key, not two', async () => {
    const { storage, a, b } = await setup();
    const made = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).create(newKey('once'))));
    assert.equal(made.filter((m) => m.created).length, 1);
    const keys = new Set(made.map((m) => m.policy.versions['1']!.key));
    assert.equal(keys.size, 1, 'everyone got the same key');
    await storage.close();
  });
});


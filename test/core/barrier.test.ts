import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Barrier, DecryptError, openValue, sealValue } from '../../src/core/barrier/index.js';
import { SealedError } from '../../src/core/errors.js';
import { SqliteStorage } from '../../src/core/storage/index.js';
import { tempDir } from '../helpers/temp.js';

describe('AES-256-GCM value sealing', () => {
  const key = randomBytes(32);

  it('round-trips and uses a fresh nonce per write', () => {
    const a = sealValue(key, 1, 'p/x', Buffer.from('secret'));
    const b = sealValue(key, 1, 'p/x', Buffer.from('secret'));
    assert.notDeepEqual(a, b);
    assert.deepEqual(a.subarray(5, 17).equals(b.subarray(5, 17)), false);
    assert.equal(openValue(key, 'p/x', a).toString(), 'secret');
  });

  it('a ciphertext moved to another path does not decrypt', () => {
    const sealed = sealValue(key, 1, 'secret/a', Buffer.from('v'));
    assert.throws(() => openValue(key, 'secret/b', sealed), DecryptError);
  });

  it('a flipped byte anywhere does not decrypt', () => {
    const sealed = sealValue(key, 1, 'p/y', Buffer.from('some secret value'));
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] = bad[i]! ^ 0x01;
      assert.throws(() => openValue(key, 'p/y', bad), DecryptError, `byte ${i}`);
    }
  });

  it('the wrong key does not decrypt', () => {
    const sealed = sealValue(key, 1, 'p/z', Buffer.from('v'));
    assert.throws(() => openValue(randomBytes(32), 'p/z', sealed), DecryptError);
  });

  it('matches a NIST GCM test vector (SP 800-38D, AES-256, 96-bit IV) through node:crypto', async () => {
    // gcmEncryptExtIV256.rsp, Count = 0 with PTlen=128, AADlen=128 — checks that the primitive we build on is standard GCM.
    const { createCipheriv } = await import('node:crypto');
    const k = Buffer.from('92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b', 'hex');
    const iv = Buffer.from('ac93a1a6145299bde902f21a', 'hex');
    const pt = Buffer.from('2d71bcfa914e4ac045b2aa60955fad24', 'hex');
    const aad = Buffer.from('1e0889016f67601c8ebea4943bc23ad6', 'hex');
    const c = createCipheriv('aes-256-gcm', k, iv);
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(pt), c.final()]);
    assert.equal(ct.toString('hex'), '8995ae2e6df3dbf96fac7b7137bae67f');
    assert.equal(c.getAuthTag().toString('hex'), 'eca5aa77d51d4a0a14d9c51e1da474ab');
  });
});

describe('barrier', () => {
  let storage: SqliteStorage;
  let barrier: Barrier;
  const rootKey = randomBytes(32);
  const dir = tempDir('barrier');

  before(async () => {
    storage = new SqliteStorage({ path: join(dir, 'b.db'), synchronous: 'normal' });
    barrier = new Barrier(storage);
    await barrier.initialize(rootKey);
  });
  after(() => storage.close());

  it('stores values encrypted and returns plaintext', async () => {
    await barrier.put('secret/one', { password: 'hunter2' });
    const raw = await storage.get('secret/one');
    assert.ok(raw);
    assert.ok(!raw.value.includes(Buffer.from('hunter2')));
    assert.deepEqual((await barrier.getJson('secret/one'))?.value, { password: 'hunter2' });
  });

  it('a stored value copied to another path is refused on read', async () => {
    await barrier.put('secret/src', Buffer.from('moved'));
    const raw = await storage.get('secret/src');
    await storage.put('secret/dst', raw!.value);
    await assert.rejects(barrier.get('secret/dst'), DecryptError);
  });

  it('a flipped byte in storage is refused on read', async () => {
    await barrier.put('secret/flip', Buffer.from('value'));
    const raw = (await storage.get('secret/flip'))!.value;
    raw[raw.length - 3] ^= 0xff;
    await storage.put('secret/flip', raw);
    await assert.rejects(barrier.get('secret/flip'), DecryptError);
  });

  it('rotation adds a term: new writes use it and values from older terms still decrypt', async () => {
    await barrier.put('rot/old', Buffer.from('from term 1'));
    const before = barrier.keyStatus().term;
    const r = await barrier.rotate();
    assert.equal(r.term, before + 1);
    await barrier.put('rot/new', Buffer.from('from the new term'));
    assert.equal((await storage.get('rot/old'))!.value.readUInt32BE(1), before);
    assert.equal((await storage.get('rot/new'))!.value.readUInt32BE(1), r.term);
    assert.equal((await barrier.get('rot/old'))!.value.toString(), 'from term 1');
    assert.equal((await barrier.get('rot/new'))!.value.toString(), 'from the new term');
  });

  it('the rotated keyring survives sealing and unsealing', async () => {
    const term = barrier.keyStatus().term;
    barrier.seal();
    await assert.rejects(barrier.get('rot/old'), SealedError);
    await barrier.unseal(rootKey);
    assert.equal(barrier.keyStatus().term, term);
    assert.equal((await barrier.get('rot/old'))!.value.toString(), 'from term 1');
  });

  it('the wrong root key cannot open the keyring', async () => {
    const other = new Barrier(storage);
    await assert.rejects(other.unseal(randomBytes(32)), DecryptError);
    assert.equal(other.sealed, true);
  });

  it('a sealed barrier answers nothing', async () => {
    const sealed = new Barrier(storage);
    await assert.rejects(sealed.get('secret/one'), SealedError);
    await assert.rejects(sealed.put('secret/x', Buffer.from('x')), SealedError);
    await assert.rejects(sealed.list('secret/'), SealedError);
    await assert.rejects(sealed.txn([]), SealedError);
  });

  it('the seal records are out of reach through the barrier', async () => {
    await assert.rejects(barrier.get('seal/keyring'));
    await assert.rejects(barrier.put('seal/keyring', Buffer.from('x')));
    assert.ok(!(await barrier.list('')).includes('seal/'));
  });

  it('views confine a mount to its prefix', async () => {
    const view = barrier.view('logical/abc/');
    await view.put('k', { v: 1 });
    assert.deepEqual((await barrier.getJson('logical/abc/k'))?.value, { v: 1 });
    assert.deepEqual(await view.list(''), ['k']);
    await view.txn([{ type: 'put', key: 'k2', value: { v: 2 } }]);
    assert.deepEqual((await barrier.getJson('logical/abc/k2'))?.value, { v: 2 });
  });
});

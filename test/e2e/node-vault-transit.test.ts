import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import vault from 'node-vault';
import { startTestServer } from '../helpers/server.js';
import { refused } from '../helpers/node-vault.js';

// A real server driven with the real node-vault client, using its own transit helpers where it has them
// (encryptData, decryptData, rewrapData, transitCreateKey, transitReadKey, transitListKeys, transitDeleteKey) and
// its generic write/read where it has none (rotate, config, sign, verify), exactly as a Vault user would.
const srv = await startTestServer();
const v = vault({ apiVersion: 'v1', endpoint: srv.address, token: srv.rootToken });

const b64 = (s: string) => Buffer.from(s).toString('base64');
const text = (s: string) => Buffer.from(s, 'base64').toString('utf8');

describe('transit through node-vault', () => {
  it('mounts transit, creates, reads and lists keys with node-vault\'s helpers', async () => {
    await v.mount({ mount_point: 'transit', type: 'transit' });
    const created = await v.transitCreateKey({ name: 'orders' });
    assert.equal(created.data.type, 'aes256-gcm96');
    await v.transitCreateKey({ name: 'signer', type: 'ed25519' });
    const k = await v.transitReadKey({ name: 'orders' });
    assert.equal(k.data.name, 'orders');
    assert.equal(k.data.latest_version, 1);
    assert.equal(typeof k.data.keys['1'], 'number');
    assert.equal(k.data.supports_encryption, true);
    assert.deepEqual((await v.transitListKeys()).data.keys, ['orders', 'signer']);
  });

  it('encrypts and decrypts with encryptData / decryptData', async () => {
    const enc = await v.encryptData({ name: 'orders', plaintext: b64('order #1001: 3 widgets') });
    assert.match(enc.data.ciphertext, /^vault:v1:/);
    assert.equal(enc.data.key_version, 1);
    const dec = await v.decryptData({ name: 'orders', ciphertext: enc.data.ciphertext });
    assert.equal(text(dec.data.plaintext), 'order #1001: 3 widgets');
  });

  it('rotates with write, then rewraps an old ciphertext with rewrapData; both versions decrypt', async () => {
    const old = (await v.encryptData({ name: 'orders', plaintext: b64('before rotation') })).data.ciphertext;
    const rotated = await v.write('transit/keys/orders/rotate', {});
    assert.equal(rotated.data.latest_version, 2);
    const fresh = (await v.encryptData({ name: 'orders', plaintext: b64('after rotation') })).data.ciphertext;
    assert.match(fresh, /^vault:v2:/);
    const rewrapped = await v.rewrapData({ name: 'orders', ciphertext: old });
    assert.match(rewrapped.data.ciphertext, /^vault:v2:/);
    assert.equal(rewrapped.data.key_version, 2);
    assert.equal(text((await v.decryptData({ name: 'orders', ciphertext: rewrapped.data.ciphertext })).data.plaintext), 'before rotation');
    assert.equal(text((await v.decryptData({ name: 'orders', ciphertext: old })).data.plaintext), 'before rotation');
    // Once min_decryption_version passes v1, the old ciphertext is refused with Vault's message; the rewrapped one is not.
    await v.write('transit/keys/orders/config', { min_decryption_version: 2 });
    const tooOld = await refused(v.decryptData({ name: 'orders', ciphertext: old }), 400);
    assert.deepEqual(tooOld.response.body.errors, ['ciphertext or signature version is disallowed by policy (too old)']);
    assert.equal(text((await v.decryptData({ name: 'orders', ciphertext: rewrapped.data.ciphertext })).data.plaintext), 'before rotation');
  });

  it('batch encryption, and signing and verifying through generic writes', async () => {
    const batch = await v.write('transit/encrypt/orders', { batch_input: [{ plaintext: b64('a'), reference: 'x' }, { plaintext: b64('b'), reference: 'y' }] });
    assert.deepEqual(batch.data.batch_results.map((r: any) => r.reference), ['x', 'y']);
    // One bad item: a 400 whose body still carries every result, as Vault answers.
    const partly = await refused(v.write('transit/decrypt/orders', { batch_input: [{ ciphertext: batch.data.batch_results[0].ciphertext }, { ciphertext: 'bogus' }] }), 400);
    const results = partly.response.body.data.batch_results;
    assert.equal(text(results[0].plaintext), 'a');
    assert.equal(results[1].error, 'invalid ciphertext: no prefix');
    const signed = await v.write('transit/sign/signer', { input: b64('release notes') });
    assert.match(signed.data.signature, /^vault:v1:/);
    assert.equal((await v.write('transit/verify/signer', { input: b64('release notes'), signature: signed.data.signature })).data.valid, true);
    assert.equal((await v.write('transit/verify/signer', { input: b64('forged notes'), signature: signed.data.signature })).data.valid, false);
  });

  it('errors come back as node-vault errors: tampered ciphertext, unknown key, protected delete', async () => {
    const ct = (await v.encryptData({ name: 'orders', plaintext: b64('x') })).data.ciphertext as string;
    const tampered = ct.slice(0, -4) + (ct.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const bad = await refused(v.decryptData({ name: 'orders', ciphertext: tampered }), 400);
    assert.match(bad.message, /message authentication failed/);
    const unknown = await refused(v.decryptData({ name: 'nobody', ciphertext: ct }), 400);
    assert.match(unknown.message, /encryption key not found/);
    const protectedKey = await refused(v.transitDeleteKey({ name: 'orders' }), 400);
    assert.match(protectedKey.message, /deletion is not allowed/);
    await v.write('transit/keys/orders/config', { deletion_allowed: true });
    await v.transitDeleteKey({ name: 'orders' });
    await refused(v.transitReadKey({ name: 'orders' }), 404);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import type { PipelineResult } from '../../src/core/pipeline.js';
import { makeCore } from '../helpers/core.js';

// Signing, HMAC, data keys, random and hash through a real core; every signature and MAC is also checked with
// node:crypto directly from the exported or public key, so "valid" means valid to anyone, not just to Aegis.
const t = await makeCore();
ok(await t.call('update', 'sys/mounts/transit', { type: 'transit' }), 'mount transit');

function ok(r: PipelineResult, what = 'call'): any {
  assert.ok(r.status === 200 || r.status === 204, `${what}: expected success, got ${r.status} ${r.error?.message ?? JSON.stringify(r.response?.data ?? null)}`);
  return r.response?.data ?? null;
}

function fails(r: PipelineResult, status: number, message: RegExp): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.error?.message ?? ''}`);
  assert.match(r.error!.message, message);
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const call = (path: string, data: Record<string, unknown> = {}) => t.call('update', `transit/${path}`, data);
const read = (path: string) => t.call('read', `transit/${path}`);
const create = async (name: string, data: Record<string, unknown> = {}) => ok(await call(`keys/${name}`, data), `create ${name}`);
const sig = (signature: string) => signature.replace(/^vault:v\d+:/, '');
const valid = async (name: string, data: Record<string, unknown>) => ok(await call(`verify/${name}`, data), `verify with ${name}`).valid as boolean;

describe('ecdsa-p256', () => {
  it('signs the input (SHA-256 by default) as DER; node:crypto verifies it with the public key from the key read', async () => {
    await create('ec', { type: 'ecdsa-p256' });
    const input = Buffer.from('pay 100 to alice');
    const s = ok(await call('sign/ec', { input: b64(input) }));
    assert.match(s.signature, /^vault:v1:[A-Za-z0-9+/]+=*$/);
    assert.equal(s.key_version, 1);
    const pem = ok(await read('keys/ec')).keys['1'].public_key as string;
    assert.ok(nodeVerify('sha256', input, pem, Buffer.from(sig(s.signature), 'base64')), 'node verifies the DER signature');
    assert.ok(!nodeVerify('sha256', Buffer.from('pay 999 to alice'), pem, Buffer.from(sig(s.signature), 'base64')));
    assert.equal(await valid('ec', { input: b64(input), signature: s.signature }), true);
    assert.equal(await valid('ec', { input: b64('pay 999 to alice'), signature: s.signature }), false);
  });

  it('hash_algorithm in the body or the path; a signature made with one hash does not verify with another', async () => {
    await create('ec-hash', { type: 'ecdsa-p256' });
    const input = Buffer.from('document');
    const pem = ok(await read('keys/ec-hash')).keys['1'].public_key as string;
    for (const [vault, node] of [['sha2-384', 'sha384'], ['sha2-512', 'sha512'], ['sha3-256', 'sha3-256']]) {
      const viaPath = ok(await call(`sign/ec-hash/${vault}`, { input: b64(input) })).signature;
      const viaBody = ok(await call('sign/ec-hash', { input: b64(input), hash_algorithm: vault })).signature;
      for (const s of [viaPath, viaBody]) {
        assert.ok(nodeVerify(node!, input, pem, Buffer.from(sig(s), 'base64')), `${vault} signature verifies as ${node}`);
        assert.equal(await valid(`ec-hash/${vault}`, { input: b64(input), signature: s }), true);
        assert.equal(await valid('ec-hash', { input: b64(input), signature: s }), false, 'not as sha2-256');
      }
    }
  });

  it('marshaling_algorithm=jws gives r‖s in unpadded base64url (JOSE ES256)', async () => {
    await create('ec-jws', { type: 'ecdsa-p256' });
    const input = Buffer.from('header.payload');
    const s = ok(await call('sign/ec-jws', { input: b64(input), marshaling_algorithm: 'jws' })).signature as string;
    assert.match(s, /^vault:v1:[A-Za-z0-9_-]{86}$/);
    const raw = Buffer.from(sig(s), 'base64url');
    assert.equal(raw.length, 64);
    const pem = ok(await read('keys/ec-jws')).keys['1'].public_key as string;
    assert.ok(nodeVerify('sha256', input, { key: pem, dsaEncoding: 'ieee-p1363' }, raw));
    assert.equal(await valid('ec-jws', { input: b64(input), signature: s, marshaling_algorithm: 'jws' }), true);
    // Without marshaling_algorithm the signature must be standard base64 (DER): unpadded base64url is not.
    fails(await call('verify/ec-jws', { input: b64(input), signature: s }), 400, /failed to base64-decode signature/);
    const asDer = `vault:v1:${raw.toString('base64')}`;
    assert.equal(await valid('ec-jws', { input: b64(input), signature: asDer }), false, 'r‖s read as DER is not a valid signature');
  });

  it('after rotation new signatures use v2, v1 signatures still verify until min_decryption_version passes them', async () => {
    await create('ec-rot', { type: 'ecdsa-p256' });
    const input = b64('contract');
    const s1 = ok(await call('sign/ec-rot', { input })).signature;
    ok(await call('keys/ec-rot/rotate'));
    const s2 = ok(await call('sign/ec-rot', { input }));
    assert.match(s2.signature, /^vault:v2:/);
    assert.equal(s2.key_version, 2);
    const keys = ok(await read('keys/ec-rot')).keys;
    assert.notEqual(keys['1'].public_key, keys['2'].public_key);
    assert.ok(nodeVerify('sha256', Buffer.from('contract'), keys['2'].public_key, Buffer.from(sig(s2.signature), 'base64')));
    assert.ok(!nodeVerify('sha256', Buffer.from('contract'), keys['1'].public_key, Buffer.from(sig(s2.signature), 'base64')), 'v2 is a new key pair');
    assert.equal(await valid('ec-rot', { input, signature: s1 }), true);
    assert.match(ok(await call('sign/ec-rot', { input, key_version: 1 })).signature, /^vault:v1:/);
    ok(await call('keys/ec-rot/config', { min_decryption_version: 2 }));
    fails(await call('verify/ec-rot', { input, signature: s1 }), 400, /^ciphertext or signature version is disallowed by policy \(too old\)$/);
    fails(await call('verify/ec-rot', { input, signature: `vault:v3:${sig(s1)}` }), 400, /^invalid signature: version is too new$/);
  });

  it('the exported signing key is the key that signs: node:crypto signatures with it verify through transit', async () => {
    await create('ec-export', { type: 'ecdsa-p256', exportable: true });
    const pem = (ok(await read('export/signing-key/ec-export')).keys as Record<string, string>)['1']!;
    const mine = nodeSign('sha256', Buffer.from('made outside'), createPrivateKey(pem));
    assert.equal(await valid('ec-export', { input: b64('made outside'), signature: `vault:v1:${mine.toString('base64')}` }), true);
  });
});

describe('ed25519', () => {
  it('signs the input itself; node:crypto verifies with the raw public key; signatures are deterministic', async () => {
    await create('ed', { type: 'ed25519', exportable: true });
    const input = Buffer.from('release v1.2.3');
    const s = ok(await call('sign/ed', { input: b64(input) }));
    assert.match(s.signature, /^vault:v1:/);
    const raw = Buffer.from(sig(s.signature), 'base64');
    assert.equal(raw.length, 64);
    const x = ok(await read('keys/ed')).keys['1'].public_key as string;
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(x, 'base64').toString('base64url') }, format: 'jwk' });
    assert.ok(nodeVerify(null, input, pub, raw));
    assert.ok(!nodeVerify(null, Buffer.from('release v1.2.4'), pub, raw));
    assert.equal(await valid('ed', { input: b64(input), signature: s.signature }), true);
    assert.equal(await valid('ed', { input: b64('release v1.2.4'), signature: s.signature }), false);
    // Export: Go's 64-byte private key, seed ‖ public key; signing with the seed gives the very same signature.
    const exported = Buffer.from((ok(await read('export/signing-key/ed')).keys as Record<string, string>)['1']!, 'base64');
    assert.equal(exported.length, 64);
    assert.equal(exported.subarray(32).toString('base64'), x);
    const seedKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), exported.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    assert.deepEqual(nodeSign(null, input, seedKey), raw);
    assert.equal((ok(await read('export/public-key/ed')).keys as Record<string, string>)['1'], x);
  });

  it('a derived ed25519 key signs per context; the key read with that context shows the public key that verifies', async () => {
    await create('ed-derived', { type: 'ed25519', derived: true });
    const k = ok(await read('keys/ed-derived'));
    assert.equal(k.keys['1'].public_key, '', 'no public key without a context');
    fails(await call('sign/ed-derived', { input: b64('x') }), 400, /missing 'context' for key derivation/);
    const s = ok(await call('sign/ed-derived', { input: b64('per service'), context: b64('svc-a') }));
    const pubA = ok(await t.call('read', 'transit/keys/ed-derived', { context: b64('svc-a') })).keys['1'].public_key as string;
    assert.equal(s.public_key, pubA, 'the signature comes with the public key of its context');
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pubA, 'base64').toString('base64url') }, format: 'jwk' });
    assert.ok(nodeVerify(null, Buffer.from('per service'), key, Buffer.from(sig(s.signature), 'base64')));
    assert.equal(await valid('ed-derived', { input: b64('per service'), signature: s.signature, context: b64('svc-a') }), true);
    assert.equal(await valid('ed-derived', { input: b64('per service'), signature: s.signature, context: b64('svc-b') }), false);
    const pubB = ok(await t.call('read', 'transit/keys/ed-derived', { context: b64('svc-b') })).keys['1'].public_key;
    assert.notEqual(pubA, pubB);
  });

  it('prehashed input is refused with a reason; batch signing and verifying work item by item', async () => {
    await create('ed-batch', { type: 'ed25519' });
    fails(await call('sign/ed-batch', { input: b64('x'), prehashed: true }), 400, /prehashed input is not supported for ed25519 keys/);
    const signed = ok(await call('sign/ed-batch', { batch_input: [{ input: b64('a'), reference: 'first' }, { input: b64('b') }] })).batch_results;
    assert.deepEqual(signed.map((r: any) => [r.key_version, r.reference]), [[1, 'first'], [1, '']]);
    const checked = await call('verify/ed-batch', { batch_input: [
      { input: b64('a'), signature: signed[0].signature }, { input: b64('a'), signature: signed[1].signature }, { input: b64('b'), signature: 'junk' },
    ] });
    assert.equal(checked.status, 400, 'one item was malformed');
    assert.deepEqual((checked.response!.data!.batch_results as any[]).map((r: any) => [r.valid, r.error]),
      [[true, undefined], [false, undefined], [undefined, 'invalid signature: no prefix']]);
  });
});

describe('hmac', () => {
  it('is HMAC-SHA256 (or the path/body algorithm) of the input under the exported hmac-key, for any key type', async () => {
    for (const type of ['hmac', 'aes256-gcm96', 'ecdsa-p256']) {
      const name = `mac-${type}`;
      await create(name, { type, exportable: true });
      const key = Buffer.from((ok(await read(`export/hmac-key/${name}`)).keys as Record<string, string>)['1']!, 'base64');
      const input = Buffer.from('message to authenticate');
      const h = ok(await call(`hmac/${name}`, { input: b64(input) })).hmac as string;
      assert.equal(h, `vault:v1:${createHmac('sha256', key).update(input).digest('base64')}`, `${type} sha2-256`);
      const h512 = ok(await call(`hmac/${name}/sha2-512`, { input: b64(input) })).hmac;
      assert.equal(h512, `vault:v1:${createHmac('sha512', key).update(input).digest('base64')}`);
      assert.equal(ok(await call(`hmac/${name}`, { input: b64(input), algorithm: 'sha3-256' })).hmac, `vault:v1:${createHmac('sha3-256', key).update(input).digest('base64')}`);
      assert.equal(await valid(name, { input: b64(input), hmac: h }), true);
      assert.equal(await valid(name, { input: b64('tampered'), hmac: h }), false);
      assert.equal(await valid(`${name}/sha2-512`, { input: b64(input), hmac: h512 }), true);
      assert.equal(await valid(name, { input: b64(input), hmac: h512 }), false, 'a SHA-512 HMAC is not a SHA-256 one');
    }
  });

  it('rotation gives a new HMAC key; old HMACs verify until min_decryption_version; batch HMAC', async () => {
    await create('mac-rot', { type: 'hmac' });
    const h1 = ok(await call('hmac/mac-rot', { input: b64('x') })).hmac;
    ok(await call('keys/mac-rot/rotate'));
    const h2 = ok(await call('hmac/mac-rot', { input: b64('x') })).hmac;
    assert.match(h2, /^vault:v2:/);
    assert.notEqual(h1.slice(9), h2.slice(9));
    assert.equal(ok(await call('hmac/mac-rot', { input: b64('x'), key_version: 1 })).hmac, h1);
    assert.equal(await valid('mac-rot', { input: b64('x'), hmac: h1 }), true);
    ok(await call('keys/mac-rot/config', { min_decryption_version: 2 }));
    fails(await call('verify/mac-rot', { input: b64('x'), hmac: h1 }), 400, /cannot verify HMAC: version is too old/);
    const batch = ok(await call('hmac/mac-rot', { batch_input: [{ input: b64('x'), reference: 'r' }, { input: b64('y') }] })).batch_results;
    assert.deepEqual(batch.map((r: any) => [r.hmac, r.reference]).slice(0, 1), [[h2, 'r']]);
    const verified = ok(await call('verify/mac-rot', { batch_input: [{ input: b64('x'), hmac: h2 }, { input: b64('y'), hmac: h2 }] })).batch_results;
    assert.deepEqual(verified.map((r: any) => r.valid), [true, false]);
    fails(await call('verify/mac-rot', { batch_input: [{ input: b64('x'), hmac: h2 }, { input: b64('x'), signature: h2 }] }), 400, /must all provide 'signature' or all provide 'hmac'/);
  });
});

describe('datakey, random, hash', () => {
  it('datakey/plaintext returns a fresh key and its ciphertext; datakey/wrapped only the ciphertext', async () => {
    await create('dk');
    const p = ok(await call('datakey/plaintext/dk'));
    assert.equal(Buffer.from(p.plaintext, 'base64').length, 32);
    assert.match(p.ciphertext, /^vault:v1:/);
    assert.equal(p.key_version, 1);
    assert.equal(ok(await call('decrypt/dk', { ciphertext: p.ciphertext })).plaintext, p.plaintext);
    const again = ok(await call('datakey/plaintext/dk'));
    assert.notEqual(again.plaintext, p.plaintext);
    for (const bits of [128, 512]) assert.equal(Buffer.from(ok(await call('datakey/plaintext/dk', { bits })).plaintext, 'base64').length, bits / 8);
    const w = ok(await call('datakey/wrapped/dk', { bits: 512 }));
    assert.deepEqual(Object.keys(w).sort(), ['ciphertext', 'key_version']);
    assert.equal(Buffer.from(ok(await call('decrypt/dk', { ciphertext: w.ciphertext })).plaintext, 'base64').length, 64);
    await create('dk-derived', { derived: true });
    const d = ok(await call('datakey/wrapped/dk-derived', { context: b64('c1') }));
    assert.equal(Buffer.from(ok(await call('decrypt/dk-derived', { ciphertext: d.ciphertext, context: b64('c1') })).plaintext, 'base64').length, 32);
  });

  it('random gives the bytes asked for, base64 or hex; hash matches node:crypto', async () => {
    assert.equal(Buffer.from(ok(await call('random')).random_bytes, 'base64').length, 32);
    assert.match(ok(await call('random/16', { format: 'hex' })).random_bytes, /^[0-9a-f]{32}$/);
    assert.equal(Buffer.from(ok(await call('random/seal/8')).random_bytes, 'base64').length, 8);
    assert.equal(Buffer.from(ok(await call('random', { bytes: 100 })).random_bytes, 'base64').length, 100);
    assert.notEqual(ok(await call('random')).random_bytes, ok(await call('random')).random_bytes);
    assert.equal(ok(await call('hash', { input: b64('abc') })).sum, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    assert.equal(ok(await call('hash/sha2-512', { input: b64('abc'), format: 'base64' })).sum, createHash('sha512').update('abc').digest('base64'));
    assert.equal(ok(await call('hash', { input: b64('abc'), algorithm: 'sha3-256' })).sum, createHash('sha3-256').update('abc').digest('hex'));
  });
});

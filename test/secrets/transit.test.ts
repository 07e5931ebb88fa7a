import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createPrivateKey, hkdfSync, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PipelineResult } from '../../src/core/pipeline.js';
import type { TransitBackend } from '../../src/secrets/transit/index.js';
import { enableFileDevice, entries, tokenWithPolicy } from '../audit/audit-log.js';
import { makeCore } from '../helpers/core.js';

// One real core (SQLite in a temp dir) with transit mounted at transit/ and a file audit device on; every test
// uses key names of its own.
const t = await makeCore();
const auditPath = join(t.dir, 'audit.log');
await enableFileDevice(t, 'file', auditPath);
ok(await t.call('update', 'sys/mounts/transit', { type: 'transit' }), 'mount transit');

function ok(r: PipelineResult, what = 'call'): any {
  assert.ok(r.status === 200 || r.status === 204, `${what}: expected success, got ${r.status} ${r.error?.message ?? JSON.stringify(r.response?.data ?? null)}`);
  return r.response?.data ?? null;
}

function fails(r: PipelineResult, status: number, message: RegExp): string {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.error?.message ?? JSON.stringify(r.response?.data ?? null)}`);
  assert.ok(r.error, 'expected an error');
  assert.match(r.error.message, message);
  return r.error.message;
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const text = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const call = (path: string, data: Record<string, unknown> = {}) => t.call('update', `transit/${path}`, data);
const read = (path: string, data: Record<string, unknown> = {}) => t.call('read', `transit/${path}`, data);
const create = async (name: string, data: Record<string, unknown> = {}) => ok(await call(`keys/${name}`, data), `create ${name}`);
const encrypt = async (name: string, plaintext: string, extra: Record<string, unknown> = {}) =>
  ok(await call(`encrypt/${name}`, { plaintext: b64(plaintext), ...extra }), `encrypt with ${name}`);
const decrypt = async (name: string, ciphertext: string, extra: Record<string, unknown> = {}) =>
  text(ok(await call(`decrypt/${name}`, { ciphertext, ...extra }), `decrypt with ${name}`).plaintext);
const exportKey = async (kind: string, name: string, version = '') =>
  ok(await read(`export/${kind}/${name}${version ? `/${version}` : ''}`), `export ${kind} of ${name}`).keys as Record<string, string>;
/** The nonce ‖ ciphertext ‖ tag bytes of a vault:vN: value. */
const body = (ciphertext: string) => Buffer.from(ciphertext.replace(/^vault:v\d+:/, ''), 'base64');

/** Opens a ciphertext with node:crypto directly, from exported key bytes. */
function openDirect(algorithm: 'aes-256-gcm' | 'chacha20-poly1305', key: Buffer, ciphertext: string): string {
  const raw = body(ciphertext);
  const d = createDecipheriv(algorithm as 'aes-256-gcm', key, raw.subarray(0, 12), { authTagLength: 16 });
  d.setAuthTag(raw.subarray(raw.length - 16));
  return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8');
}

/** Every plaintext and key the tests handled, for the at-rest and audit scans at the end. */
const secrets: { what: string; value: Buffer }[] = [];
const remember = (what: string, value: string | Buffer) => secrets.push({ what, value: Buffer.isBuffer(value) ? value : Buffer.from(value) });

describe('transit keys', () => {
  const expected = {
    'aes256-gcm96': { enc: true, sign: false, derive: true },
    'chacha20-poly1305': { enc: true, sign: false, derive: true },
    'ecdsa-p256': { enc: false, sign: true, derive: false },
    ed25519: { enc: false, sign: true, derive: true },
    hmac: { enc: false, sign: false, derive: false },
  };

  it('every key type is created and read in Vault\'s shape, without key material', async () => {
    const before = Math.floor(Date.now() / 1000);
    for (const [type, caps] of Object.entries(expected)) {
      const name = `shape-${type}`;
      const created = await create(name, { type, exportable: true });
      const k = ok(await read(`keys/${name}`));
      assert.deepEqual(created, k, 'create answers the key as a read does');
      assert.equal(k.name, name);
      assert.equal(k.type, type);
      assert.equal(k.latest_version, 1);
      assert.equal(k.min_decryption_version, 1);
      assert.equal(k.min_encryption_version, 0);
      assert.equal(k.min_available_version, 0);
      assert.equal(k.deletion_allowed, false);
      assert.equal(k.derived, false);
      assert.equal(k.exportable, true);
      assert.equal(k.auto_rotate_period, 0);
      assert.equal(k.supports_encryption, caps.enc, `${type} supports_encryption`);
      assert.equal(k.supports_decryption, caps.enc, `${type} supports_decryption`);
      assert.equal(k.supports_signing, caps.sign, `${type} supports_signing`);
      assert.equal(k.supports_derivation, caps.derive, `${type} supports_derivation`);
      assert.deepEqual(Object.keys(k.keys), ['1']);
      if (type === 'ecdsa-p256') {
        assert.equal(k.keys['1'].name, 'P-256');
        assert.match(k.keys['1'].public_key, /^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----\n$/);
        assert.ok(Date.parse(k.keys['1'].creation_time) >= before * 1000);
      } else if (type === 'ed25519') {
        assert.equal(k.keys['1'].name, 'ed25519');
        assert.equal(Buffer.from(k.keys['1'].public_key, 'base64').length, 32);
      } else {
        assert.equal(typeof k.keys['1'], 'number');
        assert.ok(k.keys['1'] >= before && k.keys['1'] <= Date.now() / 1000 + 1, 'creation time in Unix seconds');
      }
      // The key material (exported) appears nowhere in what a read returns.
      const kinds = caps.enc ? ['encryption-key', 'hmac-key'] : caps.sign ? ['signing-key', 'hmac-key'] : ['hmac-key'];
      for (const kind of kinds) {
        const material = (await exportKey(kind, name))['1']!;
        assert.ok(!JSON.stringify(k).includes(material), `${kind} of ${type} is not in the read`);
        if (type === 'ecdsa-p256' && kind === 'signing-key') {
          // The private scalar itself, whatever encoding it might be stored in.
          remember('ecdsa-p256 private scalar', Buffer.from(createPrivateKey(material).export({ format: 'jwk' }).d!, 'base64url'));
        } else if (type === 'ed25519' && kind === 'signing-key') {
          remember('ed25519 seed', Buffer.from(material, 'base64').subarray(0, 32));
        } else {
          remember(`${type} ${kind}`, Buffer.from(material, 'base64'));
        }
      }
    }
  });

  it('an hmac key has key_size bytes (32 by default); key_size is refused for other types and out of range', async () => {
    assert.equal((await create('hmac-default', { type: 'hmac', exportable: true })).key_size, 32);
    assert.equal(Buffer.from((await exportKey('hmac-key', 'hmac-default'))['1']!, 'base64').length, 32);
    assert.equal((await create('hmac-64', { type: 'hmac', key_size: 64, exportable: true })).key_size, 64);
    assert.equal(Buffer.from((await exportKey('hmac-key', 'hmac-64'))['1']!, 'base64').length, 64);
    fails(await call('keys/hmac-small', { type: 'hmac', key_size: 16 }), 400, /invalid key_size 16: use 32 to 512 bytes/);
    fails(await call('keys/aes-sized', { type: 'aes256-gcm96', key_size: 64 }), 400, /key_size is not valid for algorithm aes256-gcm96/);
  });

  it('creating an existing key changes nothing and warns; unknown types, derived ECDSA and bad names are refused', async () => {
    await create('exists-once', { type: 'ed25519' });
    const again = await call('keys/exists-once', { type: 'aes256-gcm96' });
    assert.equal(again.status, 200);
    assert.deepEqual(again.response!.warnings, ['key exists-once already existed']);
    assert.equal(again.response!.data!.type, 'ed25519');
    fails(await call('keys/bad-type', { type: 'rsa-2048' }), 400, /unknown key type rsa-2048: use one of aes256-gcm96, chacha20-poly1305, ecdsa-p256, ed25519, hmac/);
    fails(await call('keys/derived-ec', { type: 'ecdsa-p256', derived: true }), 400, /key derivation is not supported for keys of type ecdsa-p256/);
    fails(await call('keys/derived-hmac', { type: 'hmac', derived: true }), 400, /key derivation is not supported for keys of type hmac/);
    fails(await call('keys/conv', { derived: true, convergent_encryption: true }), 400, /convergent_encryption is not supported/);
    fails(await call('keys/-dash', {}), 400, /invalid key name "-dash"/);
    fails(await call('keys/rot', { auto_rotate_period: '10m' }), 400, /auto rotate period must be 0 to disable or at least an hour/);
    fails(await read('keys/never-created'), 404, /no transit key named "never-created"/);
  });

  it('LIST keys/ names every key; an empty mount lists as 404 with no errors', async () => {
    ok(await t.call('update', 'sys/mounts/transit-empty', { type: 'transit' }));
    const empty = await t.call('list', 'transit-empty/keys/');
    assert.equal(empty.status, 404);
    assert.deepEqual(empty.response?.bare, { errors: [] });
    await create('listed-a');
    await create('listed-b', { type: 'ed25519' });
    const keys = ok(await t.call('list', 'transit/keys/')).keys as string[];
    assert.ok(keys.includes('listed-a') && keys.includes('listed-b'), `both listed: ${keys}`);
    assert.deepEqual([...keys].sort(), keys, 'sorted');
  });
});

describe('encrypt and decrypt', () => {
  for (const [type, algorithm] of [['aes256-gcm96', 'aes-256-gcm'], ['chacha20-poly1305', 'chacha20-poly1305']] as const) {
    it(`${type}: vault:v1: ciphertext that round-trips, a fresh nonce each time, and is exactly ${algorithm} of the key`, async () => {
      const name = `rt-${type}`;
      await create(name, { type, exportable: true });
      const a = await encrypt(name, 'the quick brown fox');
      const b = await encrypt(name, 'the quick brown fox');
      assert.match(a.ciphertext, /^vault:v1:[A-Za-z0-9+/]+=*$/);
      assert.equal(a.key_version, 1);
      assert.notEqual(a.ciphertext, b.ciphertext, 'a random nonce per encryption');
      assert.notDeepEqual(body(a.ciphertext).subarray(0, 12), body(b.ciphertext).subarray(0, 12));
      assert.equal(body(a.ciphertext).length, 12 + 'the quick brown fox'.length + 16, 'nonce ‖ ciphertext ‖ 16-byte tag');
      assert.equal(await decrypt(name, a.ciphertext), 'the quick brown fox');
      assert.equal(await decrypt(name, b.ciphertext), 'the quick brown fox');
      const key = Buffer.from((await exportKey('encryption-key', name))['1']!, 'base64');
      assert.equal(key.length, 32);
      assert.equal(openDirect(algorithm, key, a.ciphertext), 'the quick brown fox');
      remember(`${type} plaintext`, 'the quick brown fox');
      // Empty plaintext is allowed (Vault allows it too).
      assert.equal(await decrypt(name, (await encrypt(name, '')).ciphertext), '');
    });
  }

  it('encrypting under a new name creates the key (aes256-gcm96, or `type`; derived when a context is sent)', async () => {
    const c = await encrypt('upsert-plain', 'hello');
    assert.equal(c.key_version, 1);
    const k = ok(await read('keys/upsert-plain'));
    assert.equal(k.type, 'aes256-gcm96');
    assert.equal(k.derived, false);
    await encrypt('upsert-chacha', 'hello', { type: 'chacha20-poly1305' });
    assert.equal(ok(await read('keys/upsert-chacha')).type, 'chacha20-poly1305');
    const d = await encrypt('upsert-derived', 'hello', { context: b64('tenant-1') });
    const dk = ok(await read('keys/upsert-derived'));
    assert.equal(dk.derived, true);
    assert.equal(dk.kdf, 'hkdf_sha256');
    assert.equal(await decrypt('upsert-derived', d.ciphertext, { context: b64('tenant-1') }), 'hello');
    fails(await call('encrypt/upsert-ec', { plaintext: b64('x'), type: 'ecdsa-p256' }), 400, /key type ecdsa-p256 not supported for this operation/);
    fails(await read('keys/upsert-ec'), 404, /no transit key/);
  });

  it('creating a key by encrypting needs the create action; encrypting with an existing key needs only update', async () => {
    await create('authz-existing');
    const { token } = await tokenWithPolicy(t, 'transit-update-only',
      'permit (principal, action == Aegis::Action::"update", resource in Aegis::Path::"transit/encrypt/");');
    ok(await t.call('update', 'transit/encrypt/authz-existing', { plaintext: b64('x') }, token), 'update on an existing key');
    fails(await t.call('update', 'transit/encrypt/authz-new', { plaintext: b64('x') }, token), 403, /permission denied/);
    fails(await read('keys/authz-new'), 404, /no transit key/);
    const creator = await tokenWithPolicy(t, 'transit-create',
      'permit (principal, action == Aegis::Action::"create", resource in Aegis::Path::"transit/encrypt/");');
    ok(await t.call('update', 'transit/encrypt/authz-new', { plaintext: b64('x') }, creator.token), 'create makes the key');
    assert.equal(ok(await read('keys/authz-new')).type, 'aes256-gcm96');
  });

  it('derived keys: the key is HKDF-SHA256(key, context); another context or none does not decrypt', async () => {
    await create('derived', { derived: true, exportable: true });
    const k = ok(await read('keys/derived'));
    assert.equal(k.derived, true);
    assert.equal(k.kdf, 'hkdf_sha256');
    assert.equal(k.convergent_encryption, false);
    fails(await call('encrypt/derived', { plaintext: b64('x') }), 400, /missing 'context' for key derivation/);
    const a = await encrypt('derived', 'per-tenant secret', { context: b64('tenant-a') });
    const b = await encrypt('derived', 'per-tenant secret', { context: b64('tenant-b') });
    assert.equal(await decrypt('derived', a.ciphertext, { context: b64('tenant-a') }), 'per-tenant secret');
    assert.equal(await decrypt('derived', b.ciphertext, { context: b64('tenant-b') }), 'per-tenant secret');
    fails(await call('decrypt/derived', { ciphertext: a.ciphertext, context: b64('tenant-b') }), 400, /^cipher: message authentication failed$/);
    fails(await call('decrypt/derived', { ciphertext: a.ciphertext }), 400, /missing 'context' for key derivation/);
    // The per-context key, computed independently: it opens a's ciphertext; the base key does not.
    const base = Buffer.from((await exportKey('encryption-key', 'derived'))['1']!, 'base64');
    const keyA = Buffer.from(hkdfSync('sha256', base, Buffer.alloc(0), Buffer.from('tenant-a'), 32));
    const keyB = Buffer.from(hkdfSync('sha256', base, Buffer.alloc(0), Buffer.from('tenant-b'), 32));
    assert.notDeepEqual(keyA, keyB, 'another context is another key');
    assert.equal(openDirect('aes-256-gcm', keyA, a.ciphertext), 'per-tenant secret');
    assert.throws(() => openDirect('aes-256-gcm', base, a.ciphertext), /unable to authenticate/);
    assert.throws(() => openDirect('aes-256-gcm', keyB, a.ciphertext), /unable to authenticate/);
    fails(await call('encrypt/derived', { plaintext: b64('x'), context: b64('x'.repeat(1025)) }), 400, /context is 1025 bytes; at most 1024/);
  });

  it('associated_data is authenticated: decrypting needs the same', async () => {
    await create('aad');
    const c = await encrypt('aad', 'bound', { associated_data: b64('record-17') });
    assert.equal(await decrypt('aad', c.ciphertext, { associated_data: b64('record-17') }), 'bound');
    fails(await call('decrypt/aad', { ciphertext: c.ciphertext, associated_data: b64('record-18') }), 400, /message authentication failed/);
    fails(await call('decrypt/aad', { ciphertext: c.ciphertext }), 400, /message authentication failed/);
  });
});

describe('rotation, rewrap and minimum versions', () => {
  it('rotate adds a version used for new ciphertexts; old ones still decrypt; key_version picks a version', async () => {
    await create('rot');
    const v1 = await encrypt('rot', 'first');
    const rotated = ok(await call('keys/rot/rotate'));
    assert.equal(rotated.latest_version, 2);
    assert.deepEqual(Object.keys(rotated.keys).sort(), ['1', '2']);
    const v2 = await encrypt('rot', 'second');
    assert.match(v2.ciphertext, /^vault:v2:/);
    assert.equal(v2.key_version, 2);
    assert.equal(await decrypt('rot', v1.ciphertext), 'first');
    assert.equal(await decrypt('rot', v2.ciphertext), 'second');
    const old = await encrypt('rot', 'pinned', { key_version: 1 });
    assert.match(old.ciphertext, /^vault:v1:/);
    fails(await call('encrypt/rot', { plaintext: b64('x'), key_version: 3 }), 400, /requested version for encryption is higher than the latest key version \(2\)/);
    fails(await call('keys/never/rotate'), 400, /key not found/);
  });

  it('rewrap moves a ciphertext to the latest version (or key_version) without changing the plaintext', async () => {
    await create('rewrap');
    const v1 = await encrypt('rewrap', 'keep me');
    ok(await call('keys/rewrap/rotate'));
    ok(await call('keys/rewrap/rotate'));
    const r = ok(await call('rewrap/rewrap', { ciphertext: v1.ciphertext }));
    assert.match(r.ciphertext, /^vault:v3:/);
    assert.equal(r.key_version, 3);
    assert.equal(await decrypt('rewrap', r.ciphertext), 'keep me');
    const pinned = ok(await call('rewrap/rewrap', { ciphertext: v1.ciphertext, key_version: 2 }));
    assert.match(pinned.ciphertext, /^vault:v2:/);
    assert.equal(await decrypt('rewrap', pinned.ciphertext), 'keep me');
    const batch = ok(await call('rewrap/rewrap', { batch_input: [{ ciphertext: v1.ciphertext, reference: 'r1' }, { ciphertext: pinned.ciphertext }] }));
    assert.deepEqual(batch.batch_results.map((x: any) => [x.key_version, x.reference]), [[3, 'r1'], [3, '']]);
    assert.equal(await decrypt('rewrap', batch.batch_results[1].ciphertext), 'keep me');
    fails(await call('rewrap/rewrap', { ciphertext: 'vault:v1:AAAA' }), 400, /invalid ciphertext length/);
  });

  it('min_decryption_version refuses older ciphertexts and hides older versions; lowering it again restores them', async () => {
    await create('mindec');
    const v1 = await encrypt('mindec', 'old data');
    ok(await call('keys/mindec/rotate'));
    ok(await call('keys/mindec/rotate'));
    const cfg = ok(await call('keys/mindec/config', { min_decryption_version: 2 }));
    assert.equal(cfg.min_decryption_version, 2);
    assert.deepEqual(Object.keys(cfg.keys).sort(), ['2', '3'], 'versions below min_decryption_version are not shown');
    fails(await call('decrypt/mindec', { ciphertext: v1.ciphertext }), 400, /^ciphertext or signature version is disallowed by policy \(too old\)$/);
    fails(await call('rewrap/mindec', { ciphertext: v1.ciphertext }), 400, /too old/);
    fails(await call('encrypt/mindec', { plaintext: b64('x'), key_version: 1 }), 400, /below min_decryption_version \(2\)/);
    fails(await call('keys/mindec/config', { min_decryption_version: 4 }), 400, /cannot set min decryption version of 4, latest key version is 3/);
    ok(await call('keys/mindec/config', { min_decryption_version: 1 }));
    assert.equal(await decrypt('mindec', v1.ciphertext), 'old data');
  });

  it('min_encryption_version refuses explicit older versions; it cannot go below min_decryption_version or above latest', async () => {
    await create('minenc');
    ok(await call('keys/minenc/rotate'));
    ok(await call('keys/minenc/rotate'));
    assert.equal(ok(await call('keys/minenc/config', { min_encryption_version: 3 })).min_encryption_version, 3);
    fails(await call('encrypt/minenc', { plaintext: b64('x'), key_version: 2 }), 400, /less than the minimum encryption key version \(3\)/);
    assert.match((await encrypt('minenc', 'x')).ciphertext, /^vault:v3:/);
    assert.match((await encrypt('minenc', 'x', { key_version: 3 })).ciphertext, /^vault:v3:/);
    fails(await call('keys/minenc/config', { min_encryption_version: 4 }), 400, /cannot set min encryption version of 4, latest key version is 3/);
    ok(await call('keys/minenc/config', { min_encryption_version: 2 }));
    fails(await call('keys/minenc/config', { min_decryption_version: 3 }), 400,
      /min encryption version of 2 must be greater than or equal to min decryption version of 3/);
    const k = ok(await read('keys/minenc'));
    assert.equal(k.min_decryption_version, 1, 'a refused config changes nothing');
    assert.equal(k.min_encryption_version, 2);
  });
});

describe('batch', () => {
  it('encrypts and decrypts a batch, each result with its reference', async () => {
    await create('batch');
    const enc = ok(await call('encrypt/batch', { batch_input: [{ plaintext: b64('one'), reference: 'a' }, { plaintext: b64('two') }, { plaintext: b64('three'), reference: 'c' }] }));
    assert.equal(enc.batch_results.length, 3);
    assert.deepEqual(enc.batch_results.map((r: any) => [r.key_version, r.reference]), [[1, 'a'], [1, ''], [1, 'c']]);
    const dec = ok(await call('decrypt/batch', { batch_input: enc.batch_results.map((r: any, i: number) => ({ ciphertext: r.ciphertext, reference: `d${i}` })) }));
    assert.deepEqual(dec.batch_results.map((r: any) => [text(r.plaintext), r.reference]), [['one', 'd0'], ['two', 'd1'], ['three', 'd2']]);
  });

  it('a failed item carries its error and makes the answer 400 (or partial_failure_response_code) with every result', async () => {
    await create('batch-err');
    const good = (await encrypt('batch-err', 'fine')).ciphertext;
    const raw = body(good);
    raw[raw.length - 1]! ^= 1;
    const tampered = `vault:v1:${raw.toString('base64')}`;
    const items = [{ ciphertext: good, reference: 'ok' }, { ciphertext: tampered, reference: 'bad' }, { ciphertext: 'garbage', reference: 'worse' }];
    const r = await call('decrypt/batch-err', { batch_input: items });
    assert.equal(r.status, 400);
    const results = r.response!.data!.batch_results as any[];
    assert.equal(text(results[0].plaintext), 'fine');
    assert.equal(results[0].error, undefined);
    assert.deepEqual(results.slice(1).map((x) => [x.error, x.reference, x.plaintext]),
      [['cipher: message authentication failed', 'bad', undefined], ['invalid ciphertext: no prefix', 'worse', undefined]]);
    assert.equal((await call('decrypt/batch-err', { batch_input: items, partial_failure_response_code: 207 })).status, 207);
    // When nothing succeeded, the override does not apply.
    assert.equal((await call('decrypt/batch-err', { batch_input: items.slice(1), partial_failure_response_code: 207 })).status, 400);
    const enc = await call('encrypt/batch-err', { batch_input: [{ plaintext: 'not base64!' }, { plaintext: b64('x') }, {}] });
    assert.equal(enc.status, 400);
    const er = enc.response!.data!.batch_results as any[];
    assert.match(er[0].error, /failed to base64-decode plaintext/);
    assert.match(er[1].ciphertext, /^vault:v1:/);
    assert.equal(er[2].error, 'missing plaintext to encrypt');
  });

  it('refuses a malformed batch as a whole', async () => {
    await create('batch-bad');
    fails(await call('encrypt/batch-bad', { batch_input: [] }), 400, /missing batch input to process/);
    fails(await call('encrypt/batch-bad', { batch_input: 'x' }), 400, /batch_input must be a list of objects/);
    fails(await call('encrypt/batch-bad', { batch_input: [1] }), 400, /batch_input\[0\] must be an object/);
    fails(await call('encrypt/batch-bad', { batch_input: [{ plaintext: b64('a'), context: b64('c') }, { plaintext: b64('b') }] }), 400,
      /context should be set either in all the request blocks or in none/);
  });
});

describe('deletion and export', () => {
  it('a key is deleted only after deletion_allowed is set; then it is gone from reads, lists and storage', async () => {
    await create('doomed');
    const c = await encrypt('doomed', 'x');
    fails(await t.call('delete', 'transit/keys/doomed'), 400, /deletion is not allowed for this key; set deletion_allowed=true with keys\/doomed\/config first/);
    assert.equal(await decrypt('doomed', c.ciphertext), 'x', 'a refused delete leaves the key usable');
    assert.equal(ok(await call('keys/doomed/config', { deletion_allowed: true })).deletion_allowed, true);
    assert.equal((await t.call('delete', 'transit/keys/doomed')).status, 204);
    fails(await read('keys/doomed'), 404, /no transit key named "doomed"/);
    fails(await call('decrypt/doomed', { ciphertext: c.ciphertext }), 400, /encryption key not found/);
    assert.ok(!(ok(await t.call('list', 'transit/keys/')).keys as string[]).includes('doomed'));
    const store = t.core.router.get('transit/')!.store;
    assert.equal(await store.get('policy/doomed'), null, 'the key document is deleted');
    fails(await t.call('delete', 'transit/keys/doomed'), 400, /could not delete key; not found/);
  });

  it('export needs exportable (which can only be turned on); public keys export from any asymmetric key', async () => {
    await create('no-export', { type: 'ecdsa-p256' });
    for (const kind of ['signing-key', 'hmac-key']) {
      fails(await read(`export/${kind}/no-export`), 400, /private key material is not exportable: key no-export was not created with exportable=true/);
    }
    const pub = await exportKey('public-key', 'no-export');
    assert.equal(pub['1'], ok(await read('keys/no-export')).keys['1'].public_key);
    assert.equal(ok(await call('keys/no-export/config', { exportable: true })).exportable, true);
    assert.match((await exportKey('signing-key', 'no-export'))['1']!, /^-----BEGIN EC PRIVATE KEY-----\n[\s\S]+\n-----END EC PRIVATE KEY-----$/);
    fails(await call('keys/no-export/config', { exportable: false }), 400, /cannot disable exportability after it has been enabled/);
    ok(await call('keys/no-export/rotate'));
    assert.deepEqual(Object.keys(await exportKey('signing-key', 'no-export')), ['1', '2']);
    assert.deepEqual(Object.keys(await exportKey('signing-key', 'no-export', 'latest')), ['2']);
    assert.deepEqual(Object.keys(await exportKey('signing-key', 'no-export', '1')), ['1']);
    fails(await read('export/signing-key/no-export/9'), 400, /version does not exist or cannot be found/);
    fails(await read('export/signing-key/no-export/x'), 400, /invalid key version "x"/);
    fails(await read('export/encryption-key/no-export'), 400, /encryption not supported for the key \(type ecdsa-p256\)/);
    fails(await read('export/everything/no-export'), 400, /invalid export type: everything/);
    fails(await read('export/signing-key/nothing-here'), 404, /no transit key named "nothing-here"/);
    await create('aes-public');
    fails(await read('export/public-key/aes-public'), 400, /public key not available for the key \(type aes256-gcm96\)/);
    ok(await call('keys/no-export/config', { min_decryption_version: 2 }));
    fails(await read('export/signing-key/no-export/1'), 400, /version for export is below minimum decryption version/);
    assert.deepEqual(Object.keys(await exportKey('signing-key', 'no-export')), ['2']);
  });
});

describe('bad input is a 400 with a message, never a 500', () => {
  it('each malformed request is refused clearly', async () => {
    await create('bad-aes');
    await create('bad-other');
    await create('bad-ec', { type: 'ecdsa-p256' });
    await create('bad-derived', { derived: true });
    const good = (await encrypt('bad-aes', 'x')).ciphertext;
    const flipped = body(good);
    flipped[14]! ^= 0x80;
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['decrypt/bad-aes', { ciphertext: 'nope' }, /^invalid ciphertext: no prefix$/],
      ['decrypt/bad-aes', { ciphertext: 'vault:v1' }, /^invalid ciphertext: wrong number of fields$/],
      ['decrypt/bad-aes', { ciphertext: 'vault:vX:abcd' }, /^invalid ciphertext: version number could not be decoded$/],
      ['decrypt/bad-aes', { ciphertext: 'vault:v9:' + good.slice(9) }, /^invalid ciphertext: version is too new$/],
      ['decrypt/bad-aes', { ciphertext: 'vault:v1:not*base64' }, /^invalid ciphertext: could not decode base64$/],
      ['decrypt/bad-aes', { ciphertext: 'vault:v1:AAAA' }, /^invalid ciphertext length$/],
      ['decrypt/bad-aes', { ciphertext: `vault:v1:${flipped.toString('base64')}` }, /^cipher: message authentication failed$/],
      ['decrypt/bad-other', { ciphertext: good }, /^cipher: message authentication failed$/],
      ['decrypt/bad-aes', {}, /missing ciphertext to decrypt/],
      ['decrypt/bad-aes', { ciphertext: 12 }, /invalid ciphertext: no prefix/],
      ['decrypt/bad-aes', { ciphertext: { a: 1 } }, /field "ciphertext": expected a string/],
      ['decrypt/no-such-key', { ciphertext: good }, /^encryption key not found: no transit key named "no-such-key"$/],
      ['decrypt/bad-ec', { ciphertext: good }, /message decryption not supported for key type ecdsa-p256/],
      ['decrypt/bad-derived', { ciphertext: good, context: 'not base64' }, /failed to base64-decode context/],
      ['encrypt/bad-aes', { plaintext: 'hello world' }, /failed to base64-decode plaintext: illegal base64 data/],
      ['encrypt/bad-aes', {}, /missing plaintext to encrypt/],
      ['encrypt/bad-aes', { plaintext: b64('x'), key_version: -1 }, /field "key_version": must be at least 0/],
      ['encrypt/bad-aes', { plaintext: b64('x'), key_version: 'two' }, /field "key_version": expected a whole number/],
      ['encrypt/bad-ec', { plaintext: b64('x') }, /message encryption not supported for key type ecdsa-p256/],
      ['encrypt/bad%20name', { plaintext: b64('x') }, /invalid key name/],
      ['rewrap/bad-aes', {}, /missing ciphertext to rewrap/],
      ['sign/bad-aes', { input: b64('x') }, /key type aes256-gcm96 does not support signing/],
      ['sign/no-such-key', { input: b64('x') }, /encryption key not found/],
      ['sign/bad-ec', { input: b64('x'), hash_algorithm: 'md5' }, /invalid hash algorithm "md5"/],
      ['sign/bad-ec', { input: b64('x'), marshaling_algorithm: 'pem' }, /invalid marshaling type "pem"/],
      ['sign/bad-ec', { input: b64('x'), prehashed: true }, /prehashed input is not supported for ecdsa-p256 keys/],
      ['sign/bad-ec', { input: '%%%' }, /failed to base64-decode input/],
      ['verify/bad-ec', { input: b64('x'), signature: 'abc' }, /^invalid signature: no prefix$/],
      ['verify/bad-ec', { input: b64('x'), signature: 'vault:v1:@@' }, /failed to base64-decode signature/],
      ['verify/bad-ec', { input: b64('x') }, /neither a 'signature' nor an 'hmac' were given to verify/],
      ['verify/bad-ec', { input: b64('x'), signature: 'vault:v1:AA==', hmac: 'vault:v1:AA==' }, /provide one of 'signature' or 'hmac'/],
      ['verify/bad-aes', { input: b64('x'), signature: 'vault:v1:AA==' }, /does not support verification/],
      ['hmac/bad-aes', {}, /missing input for HMAC/],
      ['hmac/bad-aes/sha1', { input: b64('x') }, /invalid hash algorithm "sha1"/],
      ['hmac/bad-aes', { input: b64('x'), key_version: 5 }, /requested version for HMAC is higher than the latest key version/],
      ['verify/bad-aes', { input: b64('x'), hmac: 'vault:v2:AA==' }, /^invalid HMAC: version is too new$/],
      ['datakey/plaintext/bad-aes', { bits: 100 }, /invalid bits value 100: use 128, 256 or 512/],
      ['datakey/raw/bad-aes', {}, /invalid datakey type "raw"/],
      ['datakey/plaintext/bad-ec', {}, /message encryption not supported for key type ecdsa-p256/],
      ['keys/bad-aes/config', { min_decryption_version: -1 }, /field "min_decryption_version": must be at least 0/],
      ['keys/nothing/config', { deletion_allowed: true }, /no existing key named nothing could be found/],
      ['keys/bad-aes/config', { allow_plaintext_backup: true }, /allow_plaintext_backup is not supported/],
      ['random/0', {}, /invalid number of bytes "0"/],
      ['random/999999', {}, /bytes cannot be greater than 131072/],
      ['random/hsm', {}, /unsupported entropy source "hsm"/],
      ['random', { format: 'binary' }, /unsupported encoding format "binary"/],
      ['hash', {}, /missing required field "input"/],
      ['hash/md5', { input: b64('x') }, /invalid hash algorithm "md5"/],
    ];
    for (const [path, data, message] of cases) {
      const r = await call(path.replace('%20', ' '), data);
      assert.equal(r.status, 400, `${path} ${JSON.stringify(data)}: expected 400, got ${r.status} ${r.error?.message}`);
      assert.match(r.error!.message, message, `${path} ${JSON.stringify(data)}`);
    }
  });
});

describe('random malformed values never make a 500', () => {
  it('garbage ciphertexts, signatures, HMACs and contexts on every key type answer 400 (or valid: false)', async () => {
    const types = ['aes256-gcm96', 'chacha20-poly1305', 'ecdsa-p256', 'ed25519', 'hmac'];
    for (const type of types) await create(`fuzz-${type}`, { type });
    await create('fuzz-derived-ed', { type: 'ed25519', derived: true });
    const pieces = ['vault:v1:', 'vault:v0:', 'vault:v2:', 'vault:v', 'vault:', ':', '=', '==', 'AA', 'AAAA', '/+', '-_', '%', '\u0000', '\n', ' '];
    const junk = (i: number) => {
      const bytes = randomBytes(i % 97);
      let v = pieces[i % pieces.length]! + (i % 3 === 0 ? bytes.toString('base64') : i % 3 === 1 ? bytes.toString('base64url') : bytes.toString('latin1'));
      if (i % 5 === 0) v += pieces[(i * 7) % pieces.length]!;
      return v;
    };
    let i = 0;
    for (const name of [...types.map((x) => `fuzz-${x}`), 'fuzz-derived-ed']) {
      for (let n = 0; n < 40; n++, i++) {
        const value = junk(i);
        const context = i % 4 === 0 ? junk(i + 1) : b64(`ctx${i}`);
        for (const [path, data] of [
          [`decrypt/${name}`, { ciphertext: value, context }],
          [`rewrap/${name}`, { ciphertext: value, context }],
          [`verify/${name}`, { input: b64('x'), signature: value, context }],
          [`verify/${name}`, { input: b64('x'), signature: value, marshaling_algorithm: 'jws', context }],
          [`verify/${name}`, { input: b64('x'), hmac: value }],
          [`encrypt/${name}`, { plaintext: value, context }],
          [`sign/${name}`, { input: value, context }],
        ] as [string, Record<string, unknown>][]) {
          const r = await call(path, data);
          // 200 only where the garbage happens to be valid input (base64 plaintext to encrypt or input to sign).
          assert.ok(r.status === 400 || r.status === 200, `${path} ${JSON.stringify(data)} answered ${r.status} ${r.error?.message}`);
          if (r.status === 200 && (path.startsWith('decrypt/') || path.startsWith('rewrap/'))) assert.fail(`${path} accepted garbage ${JSON.stringify(value)}`);
          if (r.status === 200 && path.startsWith('verify/')) assert.equal(r.response!.data!.valid, false, `${path} accepted garbage ${JSON.stringify(value)}`);
        }
      }
    }
  });
});

describe('auto-rotation', () => {
  it('a key whose auto_rotate_period has passed since its latest version is rotated by the periodic check', async () => {
    const backend = t.core.router.get('transit/')!.backend as TransitBackend;
    assert.equal((await create('auto', { auto_rotate_period: '1h' })).auto_rotate_period, 3600);
    await create('manual');
    assert.equal(await backend.rotateDue(), 0, 'nothing is due yet');
    assert.equal(await backend.rotateDue(Date.now() + 3601_000), 1, 'an hour later, only the auto key');
    assert.equal(ok(await read('keys/auto')).latest_version, 2);
    assert.equal(ok(await read('keys/manual')).latest_version, 1);
    assert.equal(await backend.rotateDue(Date.now() + 1000), 0, 'the new version restarts the period');
    assert.equal(ok(await call('keys/auto/config', { auto_rotate_period: 0 })).auto_rotate_period, 0);
    assert.equal(await backend.rotateDue(Date.now() + 10 * 3600_000), 0, 'turned off');
  });
});

describe('authorization', () => {
  it('every transit route and operation answers 403 to a token without policy and to no token', async () => {
    await create('authz-probe');
    const noPolicy = (await t.call('update', 'auth/token/create', { policies: [], no_default_policy: true })).response!.auth!.client_token;
    let checked = 0;
    for (const { route } of t.core.router.get('transit/')!.routes) {
      const path = 'transit/' + route.pattern.split('/').map((seg) => (seg.startsWith(':') ? 'authz-probe' : seg)).join('/');
      for (const op of Object.keys(route.operations) as ('read' | 'list' | 'update' | 'delete')[]) {
        for (const token of [noPolicy, null]) {
          const r = await t.call(op, path, { plaintext: b64('x'), input: b64('x') }, token);
          assert.equal(r.status, 403, `${op} ${path} with ${token ? 'a no-policy token' : 'no token'}: ${r.status} ${r.error?.message}`);
        }
        checked++;
      }
    }
    assert.ok(checked >= 23, `only ${checked} operations checked`);
    assert.equal(ok(await read('keys/authz-probe')).latest_version, 1, 'nothing was rotated by the refused calls');
  });
});

describe('audit and storage never see plaintext or keys', () => {
  it('audit logs key versions in clear and HMACs plaintext, ciphertext and exported keys', async () => {
    await create('audited', { exportable: true });
    const c = await encrypt('audited', 'audit-me-please');
    remember('audited plaintext', 'audit-me-please');
    await decrypt('audited', c.ciphertext);
    await exportKey('encryption-key', 'audited');
    const log = entries(auditPath);
    const enc = log.find((e) => e.type === 'response' && e.request.path === 'transit/encrypt/audited')!;
    assert.equal(enc.response!.data.key_version, 1, 'key_version in clear');
    assert.match(enc.response!.data.ciphertext, /^hmac-sha256:[0-9a-f]{64}$/);
    assert.match(enc.request.data.plaintext, /^hmac-sha256:/);
    const dec = log.find((e) => e.type === 'response' && e.request.path === 'transit/decrypt/audited')!;
    assert.match(dec.response!.data.plaintext, /^hmac-sha256:/);
    const exp = log.find((e) => e.type === 'response' && e.request.path === 'transit/export/encryption-key/audited')!;
    assert.equal(exp.response!.data.name, 'audited');
    assert.match(exp.response!.data.keys['1'], /^hmac-sha256:/);
  });

  it('the raw SQLite files and the audit log hold none of the plaintexts or keys these tests used', () => {
    assert.ok(secrets.length >= 12, `collected ${secrets.length} secrets`);
    const files = [...readdirSync(t.dir).filter((f) => f.startsWith('aegis.db')).map((f) => join(t.dir, f)), auditPath];
    for (const file of files) {
      const bytes = readFileSync(file);
      for (const { what, value } of secrets) {
        for (const form of [value, Buffer.from(value.toString('hex')), Buffer.from(value.toString('base64')), Buffer.from(value.toString('base64url'))]) {
          if (form.length < 8) continue;
          assert.equal(bytes.indexOf(form), -1, `${what} found in ${file}`);
        }
      }
    }
  });
});

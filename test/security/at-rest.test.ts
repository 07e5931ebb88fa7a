import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Keyring } from '../../src/core/barrier/keyring.js';
import { startTestServer } from '../helpers/server.js';

/** Every encoding a careless implementation might leave a value in. */
function forms(value: string | Buffer): Buffer[] {
  const b = Buffer.isBuffer(value) ? value : Buffer.from(value);
  return [b, Buffer.from(b.toString('hex')), Buffer.from(b.toString('base64')), Buffer.from(b.toString('base64url'))].filter((x) => x.length >= 8);
}

describe('nothing secret is stored in plaintext', () => {
  it('after writing known secrets, the raw SQLite files hold no secret, token, accessor, share or key', async () => {
    const s = await startTestServer({ shares: 3, threshold: 2 });
    const { api } = s;
    const secrets = ['correct-horse-battery-staple', 'AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'p@ssw0rd-with-ünïcødé'];
    for (const [i, v] of secrets.entries()) {
      assert.equal((await api('PUT', `secret/data/app/${i}`, { body: { data: { value: v, nested: { again: v } } } })).status, 200);
    }
    assert.equal((await api('PATCH', 'secret/data/app/0', { body: { data: { extra: secrets[1] } }, headers: { 'content-type': 'application/merge-patch+json' } })).status, 200);
    const created = (await api('POST', 'auth/token/create', { body: { policies: ['default'], meta: { owner: 'alice' } } })).body.auth;
    await api('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: join(s.dataDir, 'audit.log') } } });
    await api('GET', 'secret/data/app/1');
    await api('PUT', 'sys/rotate', {});
    assert.equal((await api('PUT', 'secret/data/after-rotate', { body: { data: { value: secrets[2] } } })).status, 200);

    // The keys themselves, taken from the running server's memory.
    const keyring = (s.core.barrier as unknown as { keyring: Keyring }).keyring;
    const termKeys = [1, 2].map((t) => (keyring as unknown as { terms: Map<number, { key: Buffer }> }).terms.get(t)!.key);
    const rootKey = (s.core.barrier as unknown as { rootKey: Buffer }).rootKey;
    const tokenHmacKey = (s.core.tokens as unknown as { key: Buffer }).key;

    const needles: [string, Buffer[]][] = [
      ...secrets.map((v, i) => [`secret ${i}`, forms(v)] as [string, Buffer[]]),
      ['root token', forms(s.rootToken)],
      ['child token', forms(created.client_token)],
      ['child accessor', forms(created.accessor)],
      ...s.keys.map((k, i) => [`unseal share ${i}`, forms(k)] as [string, Buffer[]]),
      ['root key', forms(rootKey)],
      ...termKeys.map((k, i) => [`keyring term ${i + 1}`, forms(k)] as [string, Buffer[]]),
      ['token HMAC key', forms(tokenHmacKey)],
    ];
    // Checkpointing is not forced: the WAL file is part of what an attacker would copy.
    const files = readdirSync(s.dataDir).filter((f) => f.startsWith('aegis.db')).map((f) => join(s.dataDir, f));
    assert.ok(files.length >= 1);
    for (const file of files) {
      const bytes = readFileSync(file);
      for (const [what, variants] of needles) {
        for (const v of variants) assert.equal(bytes.indexOf(v), -1, `${what} found in ${file}`);
      }
    }
    // And the secrets are really there, readable through the API.
    assert.equal((await api('GET', 'secret/data/app/3')).body.data.data.value, secrets[3]);
  });
});

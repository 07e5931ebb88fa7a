import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startDevProcess, type CliResult, type DevProcess } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// The real `aegis` binary (`aegis transit …`) against a real `aegis dev` server.

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A failure is exactly one `Error: …` line on stderr and the given exit code. */
function fails(r: CliResult, what: string, code: number, message: RegExp): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^Error: /);
  assert.match(lines[0]!, message);
}

describe('aegis transit', () => {
  let dev: DevProcess;
  let env: NodeJS.ProcessEnv;
  const cli = (...args: string[]) => runCli(['transit', ...args], env);

  before(async () => {
    dev = await startDevProcess();
    env = { AEGIS_ADDR: dev.address, AEGIS_TOKEN: dev.rootToken };
    ok(await runCli(['secrets', 'enable', 'transit'], env), 'secrets enable transit');
  });

  it('create-key, keys and key show keys without their material', async () => {
    assert.match(ok(await cli('create-key', 'orders'), 'create-key'), /Success! Created aes256-gcm96 key orders at transit\/keys\/orders/);
    ok(await cli('create-key', '--type', 'ed25519', 'signer'), 'create-key ed25519');
    assert.deepEqual(JSON.parse(ok(await cli('keys', '--format', 'json'), 'keys')), ['orders', 'signer']);
    assert.match(ok(await cli('keys'), 'keys table'), /^orders\nsigner$/m);
    const shown = ok(await cli('key', 'signer'), 'key');
    assert.match(shown, /type\s+ed25519/);
    assert.match(shown, /====== Version 1 ======\n[\s\S]*public_key\s+[A-Za-z0-9+/]{43}=/);
    fails(await cli('create-key', '--type', 'rsa-9', 'x'), 'bad type', 1, /unknown key type rsa-9/);
  });

  it('encrypt prints a vault:v1: ciphertext; decrypt writes the exact plaintext bytes back', async () => {
    const enc = JSON.parse(ok(await cli('encrypt', '--format', 'json', 'orders', 'order #1001: 3 widgets'), 'encrypt'));
    assert.match(enc.data.ciphertext, /^vault:v1:/);
    assert.equal(ok(await cli('decrypt', 'orders', enc.data.ciphertext), 'decrypt'), 'order #1001: 3 widgets');
    assert.equal(ok(await cli('decrypt', '--base64', 'orders', enc.data.ciphertext), 'decrypt --base64').trim(), Buffer.from('order #1001: 3 widgets').toString('base64'));
    const table = ok(await cli('encrypt', 'orders', 'table form'), 'encrypt table');
    assert.match(table, /ciphertext\s+vault:v1:\S+\nkey_version\s+1/);
    // From standard input and from a file, binary-safe.
    const fromStdin = /ciphertext\s+(\S+)/.exec(ok(await runCli(['transit', 'encrypt', 'orders', '-'], env, 'line one\nline two\n'), 'encrypt -'))![1]!;
    assert.equal(ok(await cli('decrypt', 'orders', fromStdin), 'decrypt stdin'), 'line one\nline two\n');
    const file = join(tempDir('transit-cli'), 'blob.bin');
    writeFileSync(file, Buffer.from([0, 1, 2, 255, 254]));
    const fromFile = /ciphertext\s+(\S+)/.exec(ok(await cli('encrypt', 'orders', `@${file}`), 'encrypt @file'))![1]!;
    assert.equal(ok(await cli('decrypt', '--base64', 'orders', fromFile), 'decrypt file').trim(), Buffer.from([0, 1, 2, 255, 254]).toString('base64'));
  });

  it('rotate, then rewrap moves an old ciphertext to the new version', async () => {
    const old = /ciphertext\s+(\S+)/.exec(ok(await cli('encrypt', 'orders', 'keep me'), 'encrypt'))![1]!;
    assert.match(ok(await cli('rotate', 'orders'), 'rotate'), /Rotated key orders: latest version 2/);
    const rewrapped = JSON.parse(ok(await cli('rewrap', '--format', 'json', 'orders', old), 'rewrap'));
    assert.match(rewrapped.data.ciphertext, /^vault:v2:/);
    assert.equal(rewrapped.data.key_version, 2);
    assert.equal(ok(await cli('decrypt', 'orders', rewrapped.data.ciphertext), 'decrypt rewrapped'), 'keep me');
    assert.match(ok(await cli('key', 'orders'), 'key'), /latest_version\s+2/);
  });

  it('sign and verify: exit 0 for a valid signature, 1 for a forged input', async () => {
    const sig = /signature\s+(vault:v1:\S+)/.exec(ok(await cli('sign', 'signer', 'release 1.0'), 'sign'))![1]!;
    assert.match(ok(await cli('verify', 'signer', sig, 'release 1.0'), 'verify'), /valid\s+true/);
    const forged = await cli('verify', 'signer', sig, 'release 6.6.6');
    assert.equal(forged.code, 1, 'invalid signature exits 1');
    assert.match(forged.stdout, /valid\s+false/);
  });

  it('derived keys take --context; errors are one line with the server message', async () => {
    ok(await cli('create-key', '--derived', 'tenant'), 'create derived');
    const ct = /ciphertext\s+(\S+)/.exec(ok(await cli('encrypt', '--context', 'tenant-a', 'tenant', 'scoped'), 'encrypt with context'))![1]!;
    assert.equal(ok(await cli('decrypt', '--context', 'tenant-a', 'tenant', ct), 'decrypt with context'), 'scoped');
    fails(await cli('decrypt', '--context', 'tenant-b', 'tenant', ct), 'other context', 1, /message authentication failed/);
    fails(await cli('decrypt', 'orders', 'not-a-ciphertext'), 'garbage', 1, /invalid ciphertext: no prefix/);
    fails(await cli('encrypt', 'orders'), 'no plaintext', 2, /give the plaintext as an argument/);
    fails(await cli('encrypt', '--key-version', 'two', 'orders', 'x'), 'bad version', 2, /--key-version must be a whole number/);
  });
});

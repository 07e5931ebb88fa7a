import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../src/server/config.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { rawRequest, runProcess } from './http-tools.js';

describe('TLS: HTTPS by default with a self-made CA', () => {
  let s: InProcessServer;
  let port: string;

  before(async () => {
    s = await startTestServer({ tls: true });
    port = new URL(s.address).port;
  });

  /** openssl s_client against the server; the server's own refusal shows as an alert it sent. */
  const sClient = (args: string[]) =>
    runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', s.caFile!, '-brief', ...args]);

  it('serves HTTPS, and the CA is in <dataDir>/tls/ca.pem', () => {
    assert.match(s.address, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(s.caFile, join(s.dataDir, 'tls', 'ca.pem'));
  });

  it('curl --cacert <ca.pem> verifies the certificate and gets an answer', async () => {
    const r = await runProcess('curl', ['-sS', '--cacert', s.caFile!, '-w', '\n%{http_code}', `${s.address}/v1/sys/health`]);
    assert.equal(r.code, 0, r.stderr);
    const [body, code] = r.stdout.split('\n');
    assert.equal(code, '200');
    assert.equal(JSON.parse(body!).initialized, true);
  });

  it('curl without the CA fails certificate verification', async () => {
    const r = await runProcess('curl', ['-sS', `${s.address}/v1/sys/health`]);
    assert.equal(r.code, 60, `curl exit 60 is "peer certificate cannot be authenticated"; got ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /certificate/i);
  });

  it('the certificate is also valid for "localhost"', async () => {
    const r = await runProcess('curl', ['-sS', '--cacert', s.caFile!, '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${port}/v1/sys/health`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '200');
  });

  it('curl -X LIST works over TLS too (the LIST framer sits on the TLS socket)', async () => {
    const w = await rawRequest(s.address, '/v1/secret/data/over-tls', {
      method: 'POST', caFile: s.caFile!, headers: { 'x-vault-token': s.rootToken, 'content-type': 'application/json' }, body: '{"data":{"a":"b"}}',
    });
    assert.equal(w.status, 200, w.text);
    const r = await runProcess('curl', ['-sS', '--cacert', s.caFile!, '-X', 'LIST', '-H', `X-Vault-Token: ${s.rootToken}`, `${s.address}/v1/secret/metadata/`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).data.keys, ['over-tls']);
  });

  it('TLS 1.3 is negotiated by default', async () => {
    const r = await sClient(['-tls1_3']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /Protocol version: TLSv1\.3/);
    assert.match(out, /Verification: OK/);
  });

  it('TLS 1.2 with an AEAD suite is accepted', async () => {
    const r = await sClient(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256/);
  });

  it('TLS 1.2 with a non-AEAD (CBC) suite is refused by the server', async () => {
    for (const cipher of ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384']) {
      const r = await sClient(['-tls1_2', '-cipher', cipher]);
      assert.notEqual(r.code, 0, `${cipher} was accepted: ${r.stdout}`);
      assert.match(r.stderr, /alert handshake failure/, `${cipher}: ${r.stderr}`);
    }
  });

  it('TLS 1.1 and TLS 1.0 are refused by the server (the client is willing: security level 0)', async () => {
    for (const v of ['-tls1_1', '-tls1']) {
      const r = await sClient([v, '-cipher', 'DEFAULT:@SECLEVEL=0']);
      assert.notEqual(r.code, 0, `${v} was accepted: ${r.stdout}`);
      // "alert protocol version" is the server's alert: the refusal is not the client's own.
      assert.match(r.stderr, /alert protocol version/, `${v}: ${r.stderr}`);
    }
  });

  it('the server key file is mode 0600 and its folder is private', () => {
    const dir = join(s.dataDir, 'tls');
    assert.equal(statSync(join(dir, 'server-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o077, 0, 'no group/other access to the tls folder');
    assert.equal(statSync(join(dir, 'server.pem')).isFile(), true);
  });
});

describe('TLS: config', () => {
  it('tls_disable on a non-loopback address is refused with a clear message', () => {
    for (const address of ['0.0.0.0:8200', '10.1.2.3:8200', '[::]:8200', 'aegis.example.com:8200']) {
      assert.throws(
        () => parseConfig({ listener: { address, tls_disable: true } }, '/tmp'),
        (err: unknown) => err instanceof ConfigError && /tls_disable is only allowed on a loopback address/.test(err.message) && err.message.includes(address),
        address,
      );
    }
  });

  it('tls_disable on a loopback address is allowed', () => {
    for (const address of ['127.0.0.1:8200', 'localhost:8200', '[::1]:8200']) {
      assert.equal(parseConfig({ listener: { address, tls_disable: true } }, '/tmp').listener.tlsDisable, true, address);
    }
  });

  it('TLS is on unless disabled', () => {
    assert.equal(parseConfig({ listener: { address: '0.0.0.0:8200' } }, '/tmp').listener.tlsDisable, false);
    assert.equal(parseConfig({}, '/tmp').listener.tlsDisable, false);
  });
});

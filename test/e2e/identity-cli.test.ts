import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { runCli, startTestServer, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

describe('aegis identity / pki CLI against a real HTTPS server', () => {
  let s: InProcessServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    s = await startTestServer({ tls: true });
    env = { AEGIS_ADDR: s.address, AEGIS_TOKEN: s.rootToken, AEGIS_CACERT: s.caFile! };
  });

  it('join-token create → identity svid writes a verifying SVID; the token cannot be used twice', async () => {
    const jt = await runCli(['identity', 'join-token', 'create', '--service', 'web', '--namespace', 'prod', '--ttl', '5m', '-f', 'json'], env);
    assert.equal(jt.code, 0, jt.stderr);
    const { token, spiffe_id: id } = JSON.parse(jt.stdout) as { token: string; spiffe_id: string };
    assert.equal(id, 'spiffe://aegis.local/ns/prod/svc/web');
    const out = join(tempDir('cli-svid'), 'web');
    const anon = { ...env, AEGIS_TOKEN: undefined };
    const r = await runCli(['identity', 'svid', '--service', 'web', '--namespace', 'prod', '--join-token', token, '--out', out], anon);
    assert.equal(r.code, 0, r.stderr);
    const leaf = new X509Certificate(readFileSync(join(out, 'svid.pem')));
    assert.equal(leaf.subjectAltName, `URI:${id}`);
    assert.equal(statSync(join(out, 'svid_key.pem')).mode & 0o777, 0o600);
    // openssl verify with the bundle, the intermediate as untrusted.
    const pems = readFileSync(join(out, 'svid.pem'), 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!;
    writeFileSync(join(out, 'chain.pem'), pems.slice(1).join(''));
    const v = spawnSync('openssl', ['verify', '-CAfile', join(out, 'bundle.pem'), '-untrusted', join(out, 'chain.pem'), join(out, 'svid.pem')], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr + v.stdout);
    const again = await runCli(['identity', 'svid', '--join-token', token, '--out', out], anon);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^Error: .*join token refused: unknown or already used/);
    assert.equal(again.stderr.trim().split('\n').length, 1);
  });

  it('a join token bound to another service is refused and stays usable', async () => {
    const jt = JSON.parse((await runCli(['identity', 'join-token', 'create', '--service', 'db', '-f', 'json'], env)).stdout) as { token: string };
    const out = tempDir('cli-svid2');
    const wrong = await runCli(['identity', 'svid', '--service', 'web', '--join-token', jt.token, '--out', out], env);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /bound to spiffe:\/\/aegis.local\/ns\/default\/svc\/db/);
    const right = await runCli(['identity', 'svid', '--service', 'db', '--join-token', jt.token, '--out', out], env);
    assert.equal(right.code, 0, right.stderr);
  });

  it('revoke by serial and by SPIFFE ID; bad arguments exit 2 with one line', async () => {
    const jt = JSON.parse((await runCli(['identity', 'join-token', 'create', '--service', 'gone', '-f', 'json'], env)).stdout) as { token: string };
    const out = tempDir('cli-svid3');
    assert.equal((await runCli(['identity', 'svid', '--join-token', jt.token, '--out', out], env)).code, 0);
    const serial = new X509Certificate(readFileSync(join(out, 'svid.pem'))).serialNumber.toLowerCase().match(/../g)!.join(':');
    const bySerial = await runCli(['identity', 'revoke', '--serial', serial, '-f', 'json'], env);
    assert.equal(bySerial.code, 0, bySerial.stderr);
    assert.equal(JSON.parse(bySerial.stdout).serial_number, serial);
    const byId = await runCli(['identity', 'revoke', '--spiffe-id', 'spiffe://aegis.local/ns/default/svc/gone'], env);
    assert.equal(byId.code, 0, byId.stderr);
    const both = await runCli(['identity', 'revoke', '--serial', serial, '--spiffe-id', 'spiffe://aegis.local/x'], env);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^Error: give exactly one of --serial or --spiffe-id\n$/);
    const foreign = await runCli(['identity', 'revoke', '--spiffe-id', 'spiffe://other.org/ns/a/svc/b'], env);
    assert.equal(foreign.code, 1);
    assert.match(foreign.stderr, /not in this trust domain/);
    const none = await runCli(['identity', 'svid', '--out', out], env);
    assert.equal(none.code, 2);
  });

  it('pki rotate-intermediate and rotate-root show the new CA; pki status lists both roots', async () => {
    const inter = await runCli(['pki', 'rotate-intermediate', '-f', 'json'], env);
    assert.equal(inter.code, 0, inter.stderr);
    assert.equal(JSON.parse(inter.stdout).intermediates.length, 2);
    const root = await runCli(['pki', 'rotate-root'], env);
    assert.equal(root.code, 0, root.stderr);
    assert.match(root.stdout, /root 2 .*cross-signed by the previous root/);
    const status = JSON.parse((await runCli(['pki', 'status', '-f', 'json'], env)).stdout) as { roots: unknown[]; intermediates: { active: boolean; root: number }[] };
    assert.equal(status.roots.length, 2);
    assert.equal(status.intermediates.find((i) => i.active)!.root, 2);
    const bundle = await runCli(['identity', 'bundle'], { ...env, AEGIS_TOKEN: undefined });
    assert.equal(bundle.stdout.match(/BEGIN CERTIFICATE/g)!.length, 2);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, ROOT, cliOk, runCli, startTestServer } from '../helpers/server.js';

// The real `aegis` CLI as a child process against a real server: catalog commands and `aegis watch service`.
const srv = await startTestServer();
const env = { AEGIS_ADDR: srv.address, AEGIS_TOKEN: srv.rootToken };
const cli = cliOk(env);

describe('aegis catalog', () => {
  it('register, services, instances (with health), check, deregister', async () => {
    assert.match(await cli('catalog', 'register', 'web', '--id', 'web-1', '--address', '10.0.0.1', '--port', '8080', '--tag', 'v1', '--meta', 'team=pay'), /Registered web-1/);
    assert.match(await cli('catalog', 'register', 'web', '--id', 'web-2', '--address', '10.0.0.2', '--port', '8080', '--ttl', '1m'), /Registered web-2/);
    assert.match(await cli('catalog', 'services'), /web\s+v1/);
    let out = await cli('catalog', 'instances', 'web');
    assert.match(out, /web-1\s+10\.0\.0\.1:8080\s+passing\s+v1/);
    assert.match(out, /web-2\s+10\.0\.0\.2:8080\s+critical/);
    assert.doesNotMatch(await cli('catalog', 'instances', 'web', '--passing'), /web-2/);
    assert.match(await cli('catalog', 'check', 'service:web-2', 'pass', '--output', 'ok'), /service:web-2: pass/);
    assert.match(await cli('catalog', 'instances', 'web', '--passing'), /web-2/);
    const json = JSON.parse(await cli('catalog', 'instances', 'web', '--format', 'json'));
    assert.equal(json.length, 2);
    assert.match(await cli('catalog', 'deregister', 'web', 'web-1'), /Deregistered web-1/);
    assert.doesNotMatch(await cli('catalog', 'instances', 'web'), /web-1/);
  });

  it('bad input is one error line and a non-zero exit', async () => {
    const r = await runCli(['catalog', 'register', 'Web', '--id', 'x', '--address', '10.0.0.1', '--port', '80'], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: .*not a valid name/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const two = await runCli(['catalog', 'register', 'web', '--id', 'x', '--address', '10.0.0.1', '--port', '80', '--http', 'http://a/', '--tcp', 'a:1'], env);
    assert.equal(two.code, 2);
    assert.match(two.stderr, /at most one of --http, --tcp, --ttl/);
  });
});

describe('aegis watch service', () => {
  it('prints the instances now and again after each change', async () => {
    await cli('catalog', 'register', 'api', '--id', 'api-1', '--address', '10.0.1.1', '--port', '80');
    const proc = spawn(process.execPath, [BIN, 'watch', 'service', 'api', '--count', '2', '--format', 'json'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((r) => proc.on('exit', r));
    const deadline = Date.now() + 10_000;
    while (!out.includes('\n') && Date.now() < deadline) await sleep(20);
    await cli('catalog', 'register', 'api', '--id', 'api-2', '--address', '10.0.1.2', '--port', '80');
    assert.equal(await exited, 0);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 2);
    assert.deepEqual(lines[0].instances.map((e: any) => e.service.id), ['api-1']);
    assert.deepEqual(lines[1].instances.map((e: any) => e.service.id), ['api-1', 'api-2']);
    assert.ok(lines[1].index > lines[0].index);
  });
});

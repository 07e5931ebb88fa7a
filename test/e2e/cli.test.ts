import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditLog } from '../../src/audit/index.js';
import { onCleanup } from '../helpers/cleanup.js';
import { BIN, ROOT, runCli, startDevProcess, type CliResult } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

/** `aegis server --config` as a real process, HTTPS with the CA it makes itself. */
async function startServerProcess(dir: string): Promise<{ address: string; caFile: string; output: () => string }> {
  const cfg = join(dir, 'aegis.json');
  writeFileSync(cfg, JSON.stringify({ data_dir: './data', listener: { address: '127.0.0.1:0' }, storage: { sqlite: { synchronous: 'normal' } }, log_level: 'warn', dns_addr: '127.0.0.1:0' }));
  const proc = spawn(process.execPath, [BIN, 'server', '--config', cfg], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  onCleanup(() => new Promise<void>((done) => {
    if (proc.exitCode !== null) return done();
    proc.once('exit', () => done());
    proc.kill('SIGTERM');
  }));
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${out}`)), 30_000);
    proc.stdout.on('data', () => { if (/initialized: /.test(out)) { clearTimeout(timer); ok(); } });
    proc.on('exit', (c) => fail(new Error(`server exited ${c}:\n${out}`)));
  });
  return { address: /listening on (\S+)/.exec(out)![1]!, caFile: /AEGIS_CACERT=(\S+)/.exec(out)![1]!, output: () => out };
}

function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A failure is exactly one `Error: …` line on stderr and a non-zero exit. */
function fails(r: CliResult, what: string, message: RegExp): void {
  assert.notEqual(r.code, 0, `${what} should fail`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^Error: /);
  assert.match(lines[0]!, message);
}

describe('the aegis CLI against a real HTTPS server', () => {
  let env: NodeJS.ProcessEnv;
  let shares: string[];
  let rootToken: string;
  const dir = tempDir('cli');

  before(async () => {
    const s = await startServerProcess(dir);
    assert.match(s.address, /^https:\/\/127\.0\.0\.1:\d+$/);
    env = { AEGIS_ADDR: s.address, AEGIS_CACERT: s.caFile };
  });

  it('refuses to talk to the server without its CA, with a one-line hint', async () => {
    fails(await runCli(['status'], { AEGIS_ADDR: env.AEGIS_ADDR }), 'status without CA', /AEGIS_CACERT/);
  });

  it('operator init prints the shares and root token once; status shows a sealed server (exit 2)', async () => {
    const out = ok(await runCli(['operator', 'init', '--key-shares', '5', '--key-threshold', '3'], env), 'init');
    shares = [...out.matchAll(/Unseal Key \d: ([0-9a-f]+)/g)].map((m) => m[1]!);
    rootToken = /Initial Root Token: (\S+)/.exec(out)![1]!;
    assert.equal(shares.length, 5);
    const status = await runCli(['status'], env);
    assert.equal(status.code, 2);
    assert.match(status.stdout, /Sealed\s+true/);
    fails(await runCli(['operator', 'init'], env), 'second init', /already initialized/);
  });

  it('operator unseal shows progress n/3 and unseals with the third share (argument, then stdin)', async () => {
    let out = ok(await runCli(['operator', 'unseal', shares[0]!], env), 'unseal 1');
    assert.match(out, /Unseal Progress\s+1\/3/);
    out = ok(await runCli(['operator', 'unseal', shares[3]!], env), 'unseal 2');
    assert.match(out, /Unseal Progress\s+2\/3/);
    out = ok(await runCli(['operator', 'unseal'], env, `${shares[4]}\n`), 'unseal 3 from stdin');
    assert.match(out, /Sealed\s+false/);
    assert.equal((await runCli(['status'], env)).code, 0);
  });

  it('kv put/get/patch/list/delete/undelete/destroy/metadata, with --format json', async () => {
    const e = { ...env, AEGIS_TOKEN: rootToken };
    ok(await runCli(['kv', 'put', 'secret/app/db', 'username=app', 'password=p1'], e), 'put');
    ok(await runCli(['kv', 'put', '--cas', '1', 'secret/app/db', 'username=app', 'password=p2'], e), 'put cas');
    fails(await runCli(['kv', 'put', '--cas', '1', 'secret/app/db', 'password=p3'], e), 'stale cas', /check-and-set/);
    ok(await runCli(['kv', 'patch', 'secret/app/db', 'port=5432'], e), 'patch');
    const json = JSON.parse(ok(await runCli(['kv', 'get', '--format', 'json', 'secret/app/db'], e), 'get json'));
    assert.deepEqual(json.data.data, { username: 'app', password: 'p2', port: '5432' });
    assert.equal(json.data.metadata.version, 3);
    assert.equal(ok(await runCli(['kv', 'get', '--version', '1', '--field', 'password', 'secret/app/db'], e), 'get v1').trim(), 'p1');
    assert.match(ok(await runCli(['kv', 'list', 'secret/app'], e), 'list'), /^db$/m);
    ok(await runCli(['kv', 'delete', 'secret/app/db'], e), 'delete');
    fails(await runCli(['kv', 'get', 'secret/app/db'], e), 'get deleted', /deleted/);
    ok(await runCli(['kv', 'undelete', '--versions', '3', 'secret/app/db'], e), 'undelete');
    ok(await runCli(['kv', 'destroy', '--versions', '1', 'secret/app/db'], e), 'destroy');
    fails(await runCli(['kv', 'get', '--version', '1', 'secret/app/db'], e), 'get destroyed', /destroyed/);
    ok(await runCli(['kv', 'metadata', 'put', '--max-versions', '4', '--custom-metadata', 'owner=team-a', 'secret/app/db'], e), 'metadata put');
    const meta = ok(await runCli(['kv', 'metadata', 'get', 'secret/app/db'], e), 'metadata get');
    assert.match(meta, /max_versions\s+4/);
    assert.match(meta, /owner/);
    ok(await runCli(['kv', 'metadata', 'delete', 'secret/app/db'], e), 'metadata delete');
    fails(await runCli(['kv', 'get', 'secret/app/db'], e), 'get after metadata delete', /no secret/);
    fails(await runCli(['kv', 'put', 'secret/app/x', 'not-a-pair'], e), 'bad pair', /key=value/);
  });

  it('token create/lookup/renew/revoke and capabilities', async () => {
    const e = { ...env, AEGIS_TOKEN: rootToken };
    const created = JSON.parse(ok(await runCli(['token', 'create', '--policy', 'default', '--ttl', '1h', '--metadata', 'team=a', '--format', 'json'], e), 'create'));
    const child = created.auth.client_token as string;
    assert.equal(created.auth.lease_duration, 3600);
    const look = JSON.parse(ok(await runCli(['token', 'lookup', '--format', 'json'], { ...env, AEGIS_TOKEN: child }), 'lookup-self'));
    assert.deepEqual(look.data.meta, { team: 'a' });
    const byAccessor = JSON.parse(ok(await runCli(['token', 'lookup', '--accessor', created.auth.accessor, '--format', 'json'], e), 'lookup accessor'));
    assert.equal(byAccessor.data.id, '');
    const renewed = JSON.parse(ok(await runCli(['token', 'renew', '--increment', '2h', '--format', 'json'], { ...env, AEGIS_TOKEN: child }), 'renew'));
    assert.ok(renewed.auth.lease_duration > 3600);
    assert.match(ok(await runCli(['token', 'capabilities', 'secret/data/x'], { ...env, AEGIS_TOKEN: child }), 'caps'), /deny/);
    assert.match(ok(await runCli(['token', 'capabilities', 'secret/data/x'], e), 'root caps'), /read.*sudo/);
    ok(await runCli(['token', 'revoke', child], e), 'revoke');
    fails(await runCli(['token', 'lookup'], { ...env, AEGIS_TOKEN: child }), 'lookup revoked', /403.*invalid token/);
    fails(await runCli(['token', 'create', '--ttl', 'banana'], e), 'bad ttl', /not a duration/);
  });

  it('policy write/read/list/delete; an invalid policy is refused with Cedar\'s message', async () => {
    const e = { ...env, AEGIS_TOKEN: rootToken };
    const file = join(dir, 'app.cedar');
    writeFileSync(file, 'permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/app/");\n');
    ok(await runCli(['policy', 'write', 'app', file], e), 'write');
    assert.match(ok(await runCli(['policy', 'read', 'app'], e), 'read'), /secret\/data\/app\//);
    assert.deepEqual(ok(await runCli(['policy', 'list'], e), 'list').trim().split('\n'), ['app', 'default', 'root', 'workload']);
    writeFileSync(join(dir, 'bad.cedar'), 'permit (principal, action == Aegis::Action::"reed", resource);');
    fails(await runCli(['policy', 'write', 'bad', join(dir, 'bad.cedar')], e), 'invalid policy', /unrecognized action/);
    assert.doesNotMatch(ok(await runCli(['policy', 'list'], e), 'list'), /bad/);
    ok(await runCli(['policy', 'delete', 'app'], e), 'delete');
    fails(await runCli(['policy', 'read', 'app'], e), 'read deleted', /no policy named/);
  });

  it('audit enable/list/verify/disable, and the chain of what the CLI did verifies', async () => {
    const e = { ...env, AEGIS_TOKEN: rootToken };
    const log = join(dir, 'audit.log');
    ok(await runCli(['audit', 'enable', 'file', `file_path=${log}`], e), 'enable');
    assert.match(ok(await runCli(['audit', 'list'], e), 'list'), /file\//);
    ok(await runCli(['kv', 'put', 'secret/audited', 'v=very-secret-value'], e), 'audited write');
    assert.equal(readFileSync(log, 'utf8').includes('very-secret-value'), false);
    assert.match(ok(await runCli(['audit', 'verify', log], e), 'verify'), /chain intact/);
    assert.equal(verifyAuditLog(readFileSync(log, 'utf8')).ok, true);
    ok(await runCli(['audit', 'disable', 'file'], e), 'disable');
    assert.match(ok(await runCli(['audit', 'list'], e), 'list after disable'), /No audit devices/);
  });

  it('operator rotate and seal; a sealed server answers only status', async () => {
    const e = { ...env, AEGIS_TOKEN: rootToken };
    assert.match(ok(await runCli(['operator', 'rotate'], e), 'rotate'), /term 2/);
    ok(await runCli(['operator', 'seal'], e), 'seal');
    assert.equal((await runCli(['status'], env)).code, 2);
    fails(await runCli(['kv', 'get', 'secret/audited'], e), 'read while sealed', /503 Aegis is sealed/);
  });

  it('usage errors and unreachable servers are one line and a non-zero exit', async () => {
    const usage = await runCli(['kv', 'get'], env);
    assert.notEqual(usage.code, 0);
    assert.match(usage.stderr, /missing required argument/);
    fails(await runCli(['status'], { AEGIS_ADDR: 'http://127.0.0.1:1' }), 'refused', /connection refused/);
    fails(await runCli(['status'], { AEGIS_ADDR: 'not a url' }), 'bad addr', /not a URL/);
  });
});

describe('aegis dev (what `npm start` runs)', () => {
  it('prints the address, the root token and commands to try; serves with a file audit device on', async () => {
    const dev = await startDevProcess({ rootToken: 'dev-root' });
    const out = dev.stdout();
    assert.match(out, /Address:\s+http:\/\/127\.0\.0\.1:\d+/);
    assert.match(out, /Root token:\s+dev-root/);
    const tries = out.split('Try, in another terminal:')[1]!.trim().split('\n').filter((l) => l.includes('aegis'));
    assert.ok(tries.length >= 3, out);
    const auditLog = /Audit log:\s+(\S+)/.exec(out)![1]!;
    assert.equal((await dev.api('PUT', 'secret/data/hello', { body: { data: { who: 'world' } } })).status, 200);
    // The printed commands work as printed (with the printed environment).
    const e = { AEGIS_ADDR: dev.address, AEGIS_TOKEN: 'dev-root' };
    assert.match(ok(await runCli(['kv', 'get', 'secret/hello'], e), 'printed kv get'), /who\s+world/);
    assert.equal(verifyAuditLog(readFileSync(auditLog, 'utf8')).ok, true);
    assert.ok(readFileSync(auditLog, 'utf8').includes('secret/data/hello'));
  });

  it('refuses a non-loopback address (plain HTTP would expose tokens)', async () => {
    const r = await runCli(['dev', '--listen', '0.0.0.0:18299']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /only on loopback/);
  });
});

describe('aegis audit enable accepts path= as the issue writes it', () => {
  it('`aegis audit enable file path=…` enables a file device at that path', async () => {
    const dev = await startDevProcess({ rootToken: 'alias-root' });
    const log = join(tempDir('alias'), 'via-path.log');
    const e = { AEGIS_ADDR: dev.address, AEGIS_TOKEN: 'alias-root' };
    ok(await runCli(['audit', 'enable', '--path', 'second', 'file', `path=${log}`], e), 'enable with path=');
    ok(await runCli(['kv', 'put', 'secret/alias', 'a=b'], e), 'audited write');
    assert.ok(readFileSync(log, 'utf8').includes('secret/data/alias'));
  });
});

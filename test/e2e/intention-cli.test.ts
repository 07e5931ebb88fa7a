import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cliOk, runCli, startTestServer } from '../helpers/server.js';

// The real `aegis intention` CLI as a child process against a real server.
const srv = await startTestServer();
const env = { AEGIS_ADDR: srv.address, AEGIS_TOKEN: srv.rootToken };
const cli = cliOk(env);

describe('aegis intention', () => {
  it('allow, check (exit 0 allowed, 2 denied, naming the rule), list, delete', async () => {
    const denied = await runCli(['intention', 'check', 'web', 'api'], env);
    assert.equal(denied.code, 2);
    assert.match(denied.stdout, /^Denied\n.*default deny/);
    assert.match(await cli('intention', 'allow', 'web', 'api', '--description', 'web calls api'), /default\/web => default\/api \(allow\) saved as intention:default\/web->default\/api/);
    const allowed = await cli('intention', 'check', 'web', 'default/api');
    assert.match(allowed, /^Allowed\nallowed by intention:default\/web->default\/api/);
    assert.match(await cli('intention', 'deny', 'prod/*', 'api'), /prod\/\* => default\/api \(deny\)/);
    const forbidden = await runCli(['intention', 'check', 'prod/orders', 'api'], env);
    assert.equal(forbidden.code, 2);
    assert.match(forbidden.stdout, /forbidden by intention:prod\/\*->default\/api/);
    const list = await cli('intention', 'list');
    assert.match(list, /SOURCE\s+ACTION\s+DESTINATION/);
    assert.match(list, /default\/web\s+allow\s+default\/api\s+web calls api/);
    assert.match(list, /prod\/\*\s+deny\s+default\/api/);
    assert.doesNotMatch(await cli('intention', 'list', '--source', 'web'), /prod/);
    const json = JSON.parse(await cli('intention', 'list', '--destination', 'api', '--format', 'json'));
    assert.equal(json.length, 2);
    assert.match(await cli('intention', 'get', 'web', 'api'), /permit ?\(\s*principal == Aegis::Service::"default\/web"/);
    assert.match(await cli('intention', 'delete', 'web', 'api'), /Deleted/);
    assert.equal((await runCli(['intention', 'check', 'web', 'api'], env)).code, 2);
  });

  it('methods and path prefix are checked per request', async () => {
    await cli('intention', 'allow', 'shop/web', 'shop/cart', '--methods', 'GET,POST', '--path-prefix', '/v1/');
    assert.equal((await runCli(['intention', 'check', 'shop/web', 'shop/cart', '--method', 'GET', '--path', '/v1/items'], env)).code, 0);
    assert.equal((await runCli(['intention', 'check', 'shop/web', 'shop/cart', '--method', 'DELETE', '--path', '/v1/items'], env)).code, 2);
    assert.equal((await runCli(['intention', 'check', 'shop/web', 'shop/cart', '--method', 'GET', '--path', '/admin'], env)).code, 2);
    const json = JSON.parse(await cli('intention', 'check', 'shop/web', 'shop/cart', '--method', 'POST', '--path', '/v1/', '--format', 'json'));
    assert.deepEqual(json.rules, ['intention:shop/web->shop/cart']);
  });

  it('--header limits an allow to requests with those headers, and check takes them', async () => {
    assert.match(await cli('intention', 'allow', 'hdr/web', 'hdr/api', '--header', 'X-Role=admin', '--header', 'authorization^=Bearer ', '--header', 'x-trace'), /hdr\/web => hdr\/api \(allow\)/);
    const check = (...headers: string[]) => runCli(['intention', 'check', 'hdr/web', 'hdr/api', '--method', 'GET', '--path', '/', ...headers.flatMap((h) => ['--header', h])], env);
    const yes = await check('x-role=admin', 'Authorization=Bearer abc', 'x-trace=1');
    assert.equal(yes.code, 0, yes.stderr);
    assert.match(yes.stdout, /^Allowed\nallowed by intention:hdr\/web->hdr\/api/);
    assert.equal((await check('x-role=user', 'authorization=Bearer abc', 'x-trace=1')).code, 2);
    assert.equal((await check('x-role=admin', 'x-trace=1')).code, 2, 'authorization missing');
    assert.equal((await check('x-role=admin', 'authorization=Basic abc', 'x-trace=1')).code, 2);
    assert.equal((await runCli(['intention', 'check', 'hdr/web', 'hdr/api'], env)).code, 2, 'a plain connection');
    assert.match(await cli('intention', 'list', '--source', 'hdr/web'), /hdr\/web\s+allow\s+hdr\/api\s+x-role=admin authorization\^=Bearer  x-trace/);
    const json = JSON.parse(await cli('intention', 'get', 'hdr/web', 'hdr/api', '--format', 'json'));
    assert.deepEqual(json.headers, [{ name: 'x-role', exact: 'admin' }, { name: 'authorization', prefix: 'Bearer ' }, { name: 'x-trace', present: true }]);
  });

  it('a bad --header is one error line and exit 2', async () => {
    for (const args of [
      ['intention', 'allow', 'web', 'api', '--header', 'bad name=x'],
      ['intention', 'allow', 'web', 'api', '--header', '=x'],
      ['intention', 'check', 'web', 'api', '--method', 'GET', '--header', 'x-role'],
      ['intention', 'check', 'web', 'api', '--method', 'GET', '--header', 'x-role^=adm'],
    ]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^Error: --header "/);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.equal((await runCli(['intention', 'get', 'web', 'api'], env)).code, 1, 'nothing was written');
  });

  it('bad input is one error line and exit 1; a malformed SRC is a usage error', async () => {
    const r = await runCli(['intention', 'allow', 'web', 'api', '--path-prefix', 'v1'], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: .*path_prefix "v1" must start with "\/"/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const m = await runCli(['intention', 'allow', 'web', 'api', '--methods', 'GE T'], env);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /not an HTTP method/);
    const bad = await runCli(['intention', 'allow', 'a/b/c', 'api'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /SRC "a\/b\/c"/);
  });
});

import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { before, describe, it } from 'node:test';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { assertApiError, parseResponses, pipelined, rawRequest, runProcess } from './http-tools.js';

const SECRET = { password: 'hunter2-http-api', user: 'alice' };

async function readSecret(s: InProcessServer, path = 'secret/data/app') {
  const r = await s.api('GET', path);
  assert.equal(r.status, 200, r.text);
  return { data: r.body.data.data, version: r.body.data.metadata.version as number };
}

async function listKeys(s: InProcessServer): Promise<string[]> {
  const r = await s.api('GET', 'secret/metadata/?list=true');
  assert.equal(r.status, 200, r.text);
  return r.body.data.keys;
}

describe('HTTP API: errors, limits and real clients', () => {
  let s: InProcessServer;
  let noPolicyToken: string;
  const json = { 'content-type': 'application/json' };

  before(async () => {
    s = await startTestServer();
    const w = await s.api('POST', 'secret/data/app', { body: { data: SECRET } });
    assert.equal(w.status, 200, w.text);
    const t = await s.api('POST', 'auth/token/create', { body: { policies: [], no_default_policy: true } });
    assert.equal(t.status, 200, t.text);
    noPolicyToken = t.body.auth.client_token;
    assert.deepEqual(t.body.auth.policies, []);
  });

  describe('request bodies', () => {
    it('malformed JSON is refused with 400 saying the body is not valid JSON', async () => {
      const r = await s.api('POST', 'secret/data/app', { raw: '{"data": {"password": ', headers: json });
      assertApiError(r, 400, /request body is not valid JSON/);
      assert.deepEqual((await readSecret(s)).data, SECRET);
    });

    it('a JSON array body is refused with 400', async () => {
      assertApiError(await s.api('POST', 'secret/data/app', { raw: '[{"data":{"a":"b"}}]', headers: json }), 400, /must be a JSON object/);
    });

    it('a JSON string, number or null body is refused with 400', async () => {
      for (const raw of ['"just a string"', '42', 'null', 'true']) {
        assertApiError(await s.api('POST', 'secret/data/app', { raw, headers: json }), 400, /must be a JSON object/);
      }
    });

    it('a body with a __proto__ key (at any depth) is refused with 400 and pollutes nothing', async () => {
      const bodies = [
        '{"__proto__":{"polluted":"yes"}}', '{"data":{"__proto__":{"polluted":"yes"}}}', '{"data":{"constructor":{"prototype":{"polluted":"yes"}}}}',
        // The same keys spelled with JSON escapes.
        '{"data":{"\\u005f_proto__":{"polluted":"yes"}}}', '{"data":{"__pr\\u006fto__":{"polluted":"yes"}}}', '{"data":{"constr\\u0075ctor":{"prototype":{"polluted":"yes"}}}}',
      ];
      for (const raw of bodies) {
        assertApiError(await s.api('POST', 'secret/data/app', { raw, headers: json }), 400, /__proto__/);
        assertApiError(await s.api('PATCH', 'secret/data/app', { raw, headers: { 'content-type': 'application/merge-patch+json' } }), 400, /__proto__/);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      const after = await readSecret(s);
      assert.deepEqual(after.data, SECRET);
      assert.equal(after.version, 1);
    });

    it('an empty body counts as {} (so the write is refused for having no data, not for its format)', async () => {
      assertApiError(await s.api('POST', 'secret/data/app', { raw: '', headers: json }), 400, /no data provided/);
    });

    it('text/plain and multipart bodies are refused with 415', async () => {
      assertApiError(await s.api('POST', 'secret/data/app', { raw: '{"data":{"password":"x"}}', headers: { 'content-type': 'text/plain' } }), 415, /unsupported content type "text\/plain"/);
      const multipart = '--b\r\nContent-Disposition: form-data; name="data"\r\n\r\n{"password":"x"}\r\n--b--\r\n';
      assertApiError(await s.api('POST', 'secret/data/app', { raw: multipart, headers: { 'content-type': 'multipart/form-data; boundary=b' } }), 415, /unsupported content type/);
      assert.deepEqual((await readSecret(s)).data, SECRET);
    });

    it('application/json with a charset and application/merge-patch+json are accepted', async () => {
      const w = await s.api('POST', 'secret/data/charset', { raw: '{"data":{"a":"1"}}', headers: { 'content-type': 'application/json; charset=utf-8' } });
      assert.equal(w.status, 200, w.text);
      const p = await s.api('PATCH', 'secret/data/charset', { raw: '{"data":{"b":"2"}}', headers: { 'content-type': 'application/merge-patch+json' } });
      assert.equal(p.status, 200, p.text);
      assert.deepEqual((await readSecret(s, 'secret/data/charset')).data, { a: '1', b: '2' });
    });
  });

  describe('methods and paths', () => {
    it('OPTIONS on a /v1 path is 405 with an Allow header listing the supported methods', async () => {
      const r = await s.api('OPTIONS', 'sys/health');
      assertApiError(r, 405, /unsupported method OPTIONS/);
      assert.match(r.headers.get('allow') ?? '', /GET.*LIST.*POST/);
    });

    it('TRACE on a /v1 path is 405', async () => {
      // fetch refuses to send TRACE, so this goes through node:http.
      assertApiError(await rawRequest(s.address, '/v1/sys/health', { method: 'TRACE' }), 405, /unsupported method TRACE/);
    });

    it('PATCH, POST and DELETE on the read-only sys/health are 405', async () => {
      assertApiError(await s.api('PATCH', 'sys/health', { body: {} }), 405, /unsupported operation: patch/);
      assertApiError(await s.api('POST', 'sys/health', { body: {} }), 405, /unsupported operation: update/);
      assertApiError(await s.api('DELETE', 'sys/health'), 405, /unsupported operation: delete/);
    });

    it('an unknown path is 404 for the root token', async () => {
      assertApiError(await s.api('GET', 'nothing/mounted/here'), 404, /no handler for route "nothing\/mounted\/here"/);
    });

    it('a path outside /v1 is 404 and points at /v1/', async () => {
      const r = await fetch(`${s.address}/v2/secret/data/app`, { headers: { 'x-vault-token': s.rootToken } });
      assertApiError({ status: r.status, headers: r.headers, text: '', body: await r.json() }, 404, /the API is under \/v1\//);
    });

    it('a token without policies gets the same 403 for an unknown path as for an existing secret (no existence leak)', async () => {
      const unknown = await s.api('GET', 'nothing/mounted/here', { token: noPolicyToken });
      const existing = await s.api('GET', 'secret/data/app', { token: noPolicyToken });
      const missing = await s.api('GET', 'secret/data/does-not-exist', { token: noPolicyToken });
      assertApiError(unknown, 403, /permission denied/);
      assertApiError(existing, 403, /permission denied/);
      assertApiError(missing, 403, /permission denied/);
      assert.doesNotMatch(unknown.body.errors[0], /no handler|nothing is mounted/);
    });

    // Each trick, if the server normalized it instead of refusing it, would land on secret/data/app.
    const tricks: [string, string][] = [
      ['a literal .. segment', '/v1/secret/data/x/../app'],
      ['%2e%2e', '/v1/secret/data/x/%2e%2e/app'],
      ['%2E%2E in capitals', '/v1/secret/data/x/%2E%2E/app'],
      ['a %2e segment', '/v1/secret/data/%2e/app'],
      ['a // doubled slash', '/v1/secret/data//app'],
      ['a leading doubled slash', '/v1//secret/data/app'],
      ['an encoded slash making an empty segment', '/v1/secret/data/%2fapp'],
      ['%00', '/v1/secret/data/app%00'],
      ['%00 before a suffix', '/v1/secret/data/app%00.evil'],
      ['an encoded newline', '/v1/secret/data/app%0a'],
      ['a 2000-byte path', `/v1/secret/data/app/${'a'.repeat(2000)}`],
    ];
    for (const [what, path] of tricks) {
      it(`a path with ${what} is refused with 400 and nothing changes`, async () => {
        const keysBefore = await listKeys(s);
        const w = await rawRequest(s.address, path, { method: 'POST', headers: { ...json, 'x-vault-token': s.rootToken }, body: JSON.stringify({ data: { password: 'evil' } }) });
        assertApiError(w, 400, /invalid path/);
        const d = await rawRequest(s.address, path, { method: 'DELETE', headers: { 'x-vault-token': s.rootToken } });
        assertApiError(d, 400, /invalid path/);
        const r = await rawRequest(s.address, path, { headers: { 'x-vault-token': s.rootToken } });
        assertApiError(r, 400, /invalid path/);
        const after = await readSecret(s);
        assert.deepEqual(after.data, SECRET);
        assert.equal(after.version, 1, 'no new version was written');
        assert.deepEqual(await listKeys(s), keysBefore);
      });
    }

    it('a method the HTTP parser does not know gets a 400 in the API format with Connection: close, and a keep-alive client carries on', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = 0; i < 3; i++) {
          const bad = await rawRequest(s.address, '/v1/sys/health', { method: 'BREW', agent });
          assertApiError(bad, 400, /unknown method/);
          assert.equal(bad.headers.connection, 'close', 'the server closes the connection after a parse error, and says so');
          // The next request through the same keep-alive agent is answered (not "socket hang up").
          const ok = await rawRequest(s.address, '/v1/sys/health', { agent });
          assert.equal(ok.status, 200);
        }
      } finally {
        agent.destroy();
      }
    });

    it('a path with broken percent-encoding is refused with 400 in the API error format', async () => {
      for (const path of ['/v1/secret/data/app%', '/v1/secret/data/%zz', '/v1/secret/data/%E0%A4%A']) {
        assertApiError(await rawRequest(s.address, path, { headers: { 'x-vault-token': s.rootToken } }), 400, /invalid path/);
      }
    });
  });

  describe('tokens', () => {
    it('an unknown token is refused with 403', async () => {
      assertApiError(await s.api('GET', 'secret/data/app', { token: 'aegis.not-a-real-token' }), 403, /invalid token/);
      assertApiError(await s.api('GET', 'secret/data/app', { token: null, headers: { authorization: 'Bearer aegis.not-a-real-token' } }), 403, /invalid token/);
    });

    it('no token at all is refused with 403', async () => {
      assertApiError(await s.api('GET', 'secret/data/app', { token: null }), 403, /missing client token/);
    });

    it('the token is taken from Authorization: Bearer as well as X-Vault-Token', async () => {
      const r = await s.api('GET', 'secret/data/app', { token: null, headers: { authorization: `Bearer ${s.rootToken}` } });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.data.data, SECRET);
    });

    it('an expired token is refused with 403', async () => {
      // A real token whose life is one millisecond: expired by the time the request arrives.
      const { token, entry } = await s.core.tokens.create({
        policies: ['root'], parent: null, ttl: 0.001, explicitMaxTtl: 0, numUses: 0, renewable: false, displayName: 'short', path: 'auth/token/create',
      });
      for (let i = 0; i < 1_000_000 && Date.now() <= entry.expireTime!; i++) await new Promise((r) => setImmediate(r));
      assert.ok(Date.now() > entry.expireTime!);
      assertApiError(await s.api('GET', 'secret/data/app', { token }), 403, /invalid token/);
    });

    it('a revoked token is refused with 403', async () => {
      const t = await s.api('POST', 'auth/token/create', { body: { policies: ['root'] } });
      const token = t.body.auth.client_token as string;
      assert.equal((await s.api('GET', 'secret/data/app', { token })).status, 200);
      assert.equal((await s.api('POST', 'auth/token/revoke-self', { token, body: {} })).status, 204);
      assertApiError(await s.api('GET', 'secret/data/app', { token }), 403, /invalid token/);
    });
  });

  describe('headers', () => {
    it('a bad X-Vault-Wrap-TTL is refused with 400 and the write does not happen', async () => {
      assertApiError(await s.api('GET', 'secret/data/app', { headers: { 'x-vault-wrap-ttl': 'later' } }), 400, /X-Vault-Wrap-TTL/);
      assertApiError(await s.api('POST', 'secret/data/app', { body: { data: { password: 'wrapped' } }, headers: { 'x-vault-wrap-ttl': '-5' } }), 400, /X-Vault-Wrap-TTL/);
      const after = await readSecret(s);
      assert.deepEqual(after.data, SECRET);
      assert.equal(after.version, 1);
    });

    it('HEAD sys/health answers the status without a body', async () => {
      const head = await rawRequest(s.address, '/v1/sys/health', { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.text, '');
      // Same status line as a GET, which does have a body.
      const get = await rawRequest(s.address, '/v1/sys/health');
      assert.equal(get.status, 200);
      assert.equal(get.body.initialized, true);
    });

    it('HEAD on a secret reads like GET: 200 for a readable secret, 403 without a token, no body either way', async () => {
      const ok = await rawRequest(s.address, '/v1/secret/data/app', { method: 'HEAD', headers: { 'x-vault-token': s.rootToken } });
      assert.equal(ok.status, 200);
      assert.equal(ok.text, '');
      const denied = await rawRequest(s.address, '/v1/secret/data/app', { method: 'HEAD' });
      assert.equal(denied.status, 403);
      assert.equal(denied.text, '');
    });

    it('responses carrying secrets are marked cache-control: no-store', async () => {
      const r = await s.api('GET', 'secret/data/app');
      assert.equal(r.headers.get('cache-control'), 'no-store');
    });
  });

  describe('curl as a real client', () => {
    it('curl -X LIST on secret/metadata/ lists the keys', async () => {
      const r = await runProcess('curl', ['-sS', '-X', 'LIST', '-H', `X-Vault-Token: ${s.rootToken}`, '-w', '\n%{http_code}', `${s.address}/v1/secret/metadata/`]);
      assert.equal(r.code, 0, r.stderr);
      const [body, code] = r.stdout.split('\n');
      assert.equal(code, '200');
      assert.ok(JSON.parse(body!).data.keys.includes('app'), body);
    });

    it('curl -X LIST with a query string keeps the query and still lists', async () => {
      const r = await runProcess('curl', ['-sS', '-X', 'LIST', '-H', `X-Vault-Token: ${s.rootToken}`, '-w', '\n%{http_code}', `${s.address}/v1/secret/metadata/?foo=bar`]);
      const [body, code] = r.stdout.split('\n');
      assert.equal(code, '200', body);
      assert.ok(JSON.parse(body!).data.keys.includes('app'));
    });

    it('curl -d (sent as a form content type) writes a secret', async () => {
      const r = await runProcess('curl', ['-sS', '-H', `X-Vault-Token: ${s.rootToken}`, '-d', '{"data":{"a":"b"}}', '-w', '\n%{http_code}', `${s.address}/v1/secret/data/from-curl`]);
      assert.equal(r.code, 0, r.stderr);
      const [body, code] = r.stdout.split('\n');
      assert.equal(code, '200', body);
      assert.equal(JSON.parse(body!).data.version, 1);
      assert.deepEqual((await readSecret(s, 'secret/data/from-curl')).data, { a: 'b' });
    });

    it('several LIST and POST requests with curl --next reuse one connection and all answer correctly', async () => {
      const H = ['-H', `X-Vault-Token: ${s.rootToken}`];
      const W = ['-w', '\n@@%{http_code} %{num_connects}\n'];
      const base = `${s.address}/v1/secret`;
      const args = [
        '-sS', ...H, ...W, '-X', 'LIST', `${base}/metadata/`,
        '--next', '-sS', ...H, ...W, '-d', '{"data":{"n":"1"}}', `${base}/data/ka-1`,
        '--next', '-sS', ...H, ...W, '-X', 'LIST', `${base}/metadata/`,
        '--next', '-sS', ...H, ...W, '-d', '{"data":{"n":"2","body":"LIST /v1/secret/metadata/ HTTP/1.1"}}', `${base}/data/ka-2`,
        '--next', '-sS', ...H, ...W, '-X', 'LIST', `${base}/metadata/`,
        '--next', '-sS', ...H, ...W, `${base}/data/ka-2`,
      ];
      const r = await runProcess('curl', args);
      assert.equal(r.code, 0, r.stderr);
      const parts = r.stdout.split('@@').slice(1).map((p) => p.split('\n')[0]!);
      const bodies = r.stdout.split(/\n@@[^\n]*\n/).slice(0, 6).map((b) => JSON.parse(b));
      assert.deepEqual(parts.map((p) => p.split(' ')[0]), ['200', '200', '200', '200', '200', '200']);
      // One TCP connection for all six transfers.
      assert.deepEqual(parts.map((p) => p.split(' ')[1]), ['1', '0', '0', '0', '0', '0']);
      assert.ok(!bodies[0].data.keys.includes('ka-1'));
      assert.ok(bodies[2].data.keys.includes('ka-1') && !bodies[2].data.keys.includes('ka-2'));
      assert.ok(bodies[4].data.keys.includes('ka-1') && bodies[4].data.keys.includes('ka-2'));
      assert.deepEqual(bodies[5].data.data, { n: '2', body: 'LIST /v1/secret/metadata/ HTTP/1.1' });
    });
  });

  describe('keep-alive and pipelining on a raw socket', () => {
    it('pipelined LIST, POST (whose body looks like a LIST request), GET and LIST on one connection all answer, in order', async () => {
      // Node may run pipelined requests concurrently (only the answers are ordered), and RFC 9112 tells clients not
      // to pipeline after a non-idempotent request; so no request here depends on the POST having finished.
      const host = new URL(s.address).host;
      const tok = `X-Vault-Token: ${s.rootToken}`;
      const note = 'LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: x\r\n\r\n';
      const body = JSON.stringify({ data: { note } });
      const payload = [
        `LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: ${host}\r\n${tok}\r\n\r\n`,
        `POST /v1/secret/data/pipelined HTTP/1.1\r\nHost: ${host}\r\n${tok}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        `GET /v1/secret/data/app HTTP/1.1\r\nHost: ${host}\r\n${tok}\r\n\r\n`,
        `LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: ${host}\r\n${tok}\r\nConnection: close\r\n\r\n`,
      ].join('');
      const res = await pipelined(s.address, payload);
      assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 200], res.map((r) => r.body).join('\n'));
      const [list1, write, read, list2] = res.map((r) => JSON.parse(r.body));
      assert.ok(list1.data.keys.includes('app') && !list1.data.keys.includes('pipelined'));
      assert.equal(write.data.version, 1);
      assert.deepEqual(read.data.data, SECRET);
      assert.ok(list2.data.keys.includes('app'));
      // The body went through byte for byte: the framer did not rewrite the LIST line inside it.
      assert.deepEqual((await readSecret(s, 'secret/data/pipelined')).data, { note });
    });

    it('LIST, POST, LIST, GET one after another on one kept-alive socket each see the previous request done', async () => {
      const url = new URL(s.address);
      const socket = connect({ host: url.hostname, port: Number(url.port) });
      await new Promise((r) => socket.once('connect', r));
      let buf = Buffer.alloc(0);
      let waiting: (() => void) | null = null;
      socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); waiting?.(); });
      let closedEarly = false;
      socket.on('close', () => { closedEarly = true; waiting?.(); });
      const exchange = async (req: string) => {
        buf = Buffer.alloc(0);
        socket.write(req);
        for (let i = 0; i < 10_000; i++) {
          try {
            const got = parseResponses(buf);
            if (got.length === 1) return got[0]!;
          } catch { /* incomplete: wait for more */ }
          assert.ok(!closedEarly, 'the server closed a kept-alive connection');
          await new Promise<void>((r) => { waiting = r; });
          waiting = null;
        }
        throw new Error('no complete answer');
      };
      const tok = `Host: ${url.host}\r\nX-Vault-Token: ${s.rootToken}\r\n`;
      const body = JSON.stringify({ data: { k: 'v' } });
      const r1 = await exchange(`LIST /v1/secret/metadata/ HTTP/1.1\r\n${tok}\r\n`);
      const r2 = await exchange(`POST /v1/secret/data/keepalive HTTP/1.1\r\n${tok}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      const r3 = await exchange(`LIST /v1/secret/metadata/ HTTP/1.1\r\n${tok}\r\n`);
      const r4 = await exchange(`GET /v1/secret/data/keepalive HTTP/1.1\r\n${tok}\r\n`);
      socket.destroy();
      assert.deepEqual([r1.status, r2.status, r3.status, r4.status], [200, 200, 200, 200]);
      assert.ok(!JSON.parse(r1.body).data.keys.includes('keepalive'));
      assert.ok(JSON.parse(r3.body).data.keys.includes('keepalive'));
      assert.deepEqual(JSON.parse(r4.body).data.data, { k: 'v' });
    });

    it('a LIST request sent in many small pieces is still understood', async () => {
      const host = new URL(s.address).host;
      const payload = `LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: ${host}\r\nX-Vault-Token: ${s.rootToken}\r\nConnection: close\r\n\r\n`;
      const url = new URL(s.address);
      const socket = connect({ host: url.hostname, port: Number(url.port) });
      await new Promise((r) => socket.once('connect', r));
      socket.setNoDelay(true);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      const closed = new Promise((r) => socket.once('close', r));
      for (let i = 0; i < payload.length; i += 7) {
        await new Promise<void>((r) => socket.write(payload.slice(i, i + 7), () => r()));
      }
      await closed;
      const [res] = parseResponses(Buffer.concat(chunks));
      assert.equal(res!.status, 200);
      assert.ok(JSON.parse(res!.body).data.keys.includes('app'));
    });
  });
});

describe('HTTP API: body size limit', () => {
  let s: InProcessServer;
  before(async () => {
    s = await startTestServer({ configure: (c) => { c.maxRequestBytes = 1024; } });
  });

  it('a body over the configured limit is refused with 413 and is not written', async () => {
    const big = JSON.stringify({ data: { blob: 'x'.repeat(4096) } });
    assertApiError(await s.api('POST', 'secret/data/big', { raw: big, headers: { 'content-type': 'application/json' } }), 413, /larger than the limit of 1024 bytes/);
    assert.equal((await s.api('GET', 'secret/data/big')).status, 404);
  });

  it('a chunked body over the limit (no Content-Length) is refused with 413 too', async () => {
    const url = new URL(s.address);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, method: 'POST', path: '/v1/secret/data/big-chunked', headers: { 'content-type': 'application/json', 'x-vault-token': s.rootToken, 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.write('{"data":{"blob":"');
      for (let i = 0; i < 8; i++) req.write('y'.repeat(512));
      req.end('"}}');
    });
    assert.equal(status, 413);
    assert.equal((await s.api('GET', 'secret/data/big-chunked')).status, 404);
  });

  it('a body under the limit is accepted', async () => {
    const small = await s.api('POST', 'secret/data/small', { body: { data: { blob: 'x'.repeat(500) } } });
    assert.equal(small.status, 200, small.text);
  });
});

describe('HTTP API: rate limit', () => {
  let s: InProcessServer;
  before(async () => {
    // A burst of 5 and one new token every 20 s: the outcome does not depend on how fast this machine is.
    s = await startTestServer({ configure: (c) => { c.rateLimit = { perSecond: 0.05, burst: 5 }; } });
  });

  it('the 6th rapid request from one client is refused with 429 and a Retry-After header', async () => {
    const statuses: number[] = [];
    let last: Awaited<ReturnType<InProcessServer['api']>> | null = null;
    for (let i = 0; i < 6; i++) {
      last = await s.api('GET', 'sys/health', { token: null });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
    assertApiError(last!, 429, /rate limit exceeded/);
    assert.equal(last!.headers.get('retry-after'), '1');
  });
});

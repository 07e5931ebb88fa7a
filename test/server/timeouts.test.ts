import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startTestServer, type InProcessServer } from '../helpers/server.js';

/** Opens a raw connection, sends `parts` (with pauses between them), and resolves with everything the server said and when it closed. */
function rawExchange(address: string, parts: string[], gapMs = 0): Promise<{ text: string; closedAfterMs: number }> {
  const { hostname, port } = new URL(address);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const sock = connect({ host: hostname, port: Number(port) });
    let text = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => { text += d; });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve({ text, closedAfterMs: performance.now() - started }));
    const guard = setTimeout(() => { sock.destroy(); reject(new Error(`server kept the connection open: ${text}`)); }, 15_000);
    sock.on('close', () => clearTimeout(guard));
    let i = 0;
    const next = () => {
      if (i >= parts.length || sock.destroyed) return;
      sock.write(parts[i++]!);
      if (i < parts.length) setTimeout(next, gapMs);
    };
    sock.on('connect', next);
  });
}

describe('slow clients are cut off (slowloris)', () => {
  let s: InProcessServer;
  before(async () => {
    s = await startTestServer({ configure: (c) => { c.requestTimeoutMs = 1000; } });
  });

  it('a request head that never completes is answered 408 and closed after the header timeout', async () => {
    const r = await rawExchange(s.address, ['GET /v1/sys/health HTTP/1.1\r\n', 'Host: a\r\n', 'X-Slow: 1\r\n'], 300);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.ok(r.closedAfterMs >= 900 && r.closedAfterMs < 5000, `closed after ${Math.round(r.closedAfterMs)} ms`);
  });

  it('on a kept-alive connection, a second request head that never completes is also cut off after the header timeout', async () => {
    const r = await rawExchange(s.address, ['GET /v1/sys/health HTTP/1.1\r\nHost: a\r\n\r\n', 'GET /v1/sys/health HTTP/1.1\r\n', 'Host: a\r\n'], 300);
    assert.match(r.text, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 408 /);
    assert.ok(r.closedAfterMs < 5000, `closed after ${Math.round(r.closedAfterMs)} ms (keep-alive alone would wait 65 s)`);
  });

  it('a body that never arrives in full is answered 408 and closed after the request timeout', async () => {
    const head = `PUT /v1/secret/data/slow HTTP/1.1\r\nHost: a\r\nX-Vault-Token: ${s.rootToken}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
    const r = await rawExchange(s.address, [head, '{"data":']);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.ok(r.closedAfterMs < 5000, `closed after ${Math.round(r.closedAfterMs)} ms`);
    assert.equal((await s.api('GET', 'secret/data/slow')).status, 404, 'nothing was written');
  });

  it('a head with bare LF line endings is refused at once, not held until a timeout', async () => {
    const r = await rawExchange(s.address, ['GET /v1/sys/health HTTP/1.1\nHost: a\n\n']);
    assert.match(r.text, /^HTTP\/1\.1 400 /);
    assert.ok(r.closedAfterMs < 900, `closed after ${Math.round(r.closedAfterMs)} ms`);
  });

  it('a complete request is unaffected and the connection stays usable', async () => {
    const r = await rawExchange(s.address, ['GET /v1/sys/health HTTP/1.1\r\nHost: a\r\n\r\n', 'GET /v1/sys/health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'], 50);
    assert.equal((r.text.match(/HTTP\/1\.1 200 /g) ?? []).length, 2);
  });
});

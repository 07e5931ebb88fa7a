import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Agent, request as httpRequest, createServer } from 'node:http';
import { before, describe, it } from 'node:test';
import { onCleanup } from '../helpers/cleanup.js';
import { portOf, proxyStatus, startMeshServer, startProxy, within, type MeshServer, type ProxyProc } from '../helpers/mesh-procs.js';

// Rotation under continuous load, with real processes: requests flow web → api through two http-mode sidecars
// while both sidecars renew their SVIDs five times each (forced through the admin port); not one request may
// fail. Then the server is killed and traffic must keep flowing on what the proxies hold (fail static).

const ROOT_TOKEN = 'proxy-rotation-root';
const RENEWALS = 5;

let server: MeshServer;
let web: ProxyProc;
let apiProxy: ProxyProc;

interface Load {
  ok: number;
  failed: string[];
  stop: () => Promise<void>;
}

/** Requests in a loop until stopped, bounded: `workers` at a time, keep-alive or a new connection each. */
function load(port: number, keepAlive: boolean, workers = 4, maxMs = 60_000): Load {
  const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: workers }) : undefined;
  const state: Load = { ok: 0, failed: [], stop: async () => undefined };
  let running = true;
  const deadline = Date.now() + maxMs;
  const one = () => new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/work', agent: agent ?? false, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode === 200 && body === 'api ok') state.ok++;
        else state.failed.push(`${res.statusCode}: ${body.slice(0, 80)}`);
        resolve();
      });
      res.on('error', (err) => { state.failed.push(`response: ${err.message}`); resolve(); });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => { state.failed.push(`request: ${err.message}`); resolve(); });
    req.end();
  });
  const loops = Array.from({ length: workers }, async () => {
    while (running && Date.now() < deadline) await one();
  });
  state.stop = async () => {
    running = false;
    await Promise.all(loops);
    agent?.destroy();
  };
  return state;
}

before(async () => {
  server = await startMeshServer(ROOT_TOKEN);
  const app = createServer((req, res) => { req.resume(); req.on('end', () => res.end('api ok')); });
  onCleanup(() => new Promise<void>((r) => app.close(() => r())));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  [web, apiProxy] = await Promise.all([
    startProxy(server, 'web', 1, { upstreams: ['api'], mode: 'http' }),
    startProxy(server, 'api', portOf(app), { mode: 'http' }),
  ]);
  await within(10_000, 'web sees a healthy api sidecar', async () => (await proxyStatus(web)).upstreams['default/api'].instances.length === 1);
  await server.api.ok('PUT', 'mesh/intentions/default/web/default/api', { body: { action: 'allow' } });
  await within(3_000, 'the intention applies', async () => {
    const l = load(web.upstreams.api!, false, 1, 500);
    await new Promise((r) => setTimeout(r, 200));
    await l.stop();
    return l.ok > 0 && l.failed.length === 0;
  });
});

async function renew(p: ProxyProc): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${p.admin}/renew`, { method: 'POST' });
  const body = await res.json() as { serial?: string; errors?: string[] };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.serial!;
}

describe('rotation under continuous load', () => {
  it(`${RENEWALS} forced renewals of both sidecars: zero failed requests, keep-alive and new connections`, async () => {
    const kept = load(web.upstreams.api!, true);
    const fresh = load(web.upstreams.api!, false);
    const serials = { web: new Set<string>(), api: new Set<string>() };
    try {
      for (let i = 0; i < RENEWALS; i++) {
        await new Promise((r) => setTimeout(r, 300));
        serials.web.add(await renew(web));
        await new Promise((r) => setTimeout(r, 300));
        serials.api.add(await renew(apiProxy));
      }
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      await Promise.all([kept.stop(), fresh.stop()]);
    }
    assert.equal(serials.web.size, RENEWALS);
    assert.equal(serials.api.size, RENEWALS);
    assert.deepEqual([...kept.failed, ...fresh.failed], []);
    // Enough traffic that every renewal happened under load (bounded loops, a few hundred requests at least).
    assert.ok(kept.ok > 100 && fresh.ok > 20, `kept ${kept.ok}, fresh ${fresh.ok}`);
    // The new SVIDs are in use: the status reports the last serial's expiry, later than before.
    assert.ok(Date.parse((await proxyStatus(web)).svid_expires) > Date.now());
  });

  it('killing the server leaves traffic flowing, with zero failures', async () => {
    const kept = load(web.upstreams.api!, true);
    const fresh = load(web.upstreams.api!, false);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const exited = once(server.proc.proc, 'exit');
      server.proc.proc.kill('SIGKILL');
      await exited;
      const okAtKill = kept.ok + fresh.ok;
      await new Promise((r) => setTimeout(r, 1_500));
      assert.ok(kept.ok + fresh.ok > okAtKill + 20, 'requests kept completing after the server died');
    } finally {
      await Promise.all([kept.stop(), fresh.stop()]);
    }
    assert.deepEqual([...kept.failed, ...fresh.failed], []);
    assert.ok((await proxyStatus(web)).staleness_seconds >= 1);
  });
});

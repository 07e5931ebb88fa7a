import 'reflect-metadata';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { errorOf, identityClient, newWorkload, type IdentityCall, type Workload } from './identity-client.js';
import { spiffeHandshake, startSpiffeServer } from './tls-peers.js';

// Workloads talking mTLS with the SVIDs Aegis issued (keys made on the agent side with makeKeyAndCsr), then the
// two ways a peer learns of a revocation: the CRL in its TLS context, or the revocation list it watches.

let s: InProcessServer;
let call: IdentityCall;
let bundle: string;
let server: Workload;

before(async () => {
  s = await startTestServer({ tls: true });
  call = identityClient(s.address, s.caFile!, s.rootToken);
  bundle = (await call('GET', 'identity/bundle', { token: null })).text;
  server = await newWorkload(call, 'api', 'shop');
});

/**
 * The CRLs from identity/crl/pem, one PEM block each: Node's `crl` option reads only the first CRL of a string,
 * so several must be given as an array.
 */
async function crlPems(): Promise<string[]> {
  const r = await call('GET', 'identity/crl/pem', { token: null });
  assert.equal(r.status, 200, r.text);
  return r.text.match(/-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----\n/g) ?? [];
}

/** The revocation list as a peer reads it, authenticated by its own SVID. */
async function revocations(query = ''): Promise<{ index: number; serials: { serial_number: string }[]; header: string }> {
  const r = await call('GET', `identity/revocations${query}`, { token: null, cert: server.certPem, key: server.keyPem });
  assert.equal(r.status, 200, errorOf(r));
  return { ...r.body.data, header: String(r.headers['x-aegis-index']) };
}

/** Node prints serials as uppercase hex; Aegis as issued ("3a:0f:…"). */
function sameSerial(a: string, b: string): boolean {
  return a.replace(/:/g, '').toLowerCase() === b.replace(/:/g, '').toLowerCase();
}

async function revoke(w: Workload): Promise<void> {
  const r = await call('POST', 'identity/revoke', { body: { serial_number: w.svid.serial_number } });
  assert.equal(r.status, 200, errorOf(r));
}

describe('mTLS between two workloads with Aegis SVIDs', () => {
  it('completes a TLS 1.3 mutual handshake; each side sees the other’s SPIFFE ID', async () => {
    const client = await newWorkload(call, 'web', 'shop');
    const srv = await startSpiffeServer({ svid: server, trust: bundle });
    const r = await spiffeHandshake(srv.port, client, bundle, server.spiffeId);
    assert.deepEqual(r, { ok: true, reply: `hello ${client.spiffeId}` });
  });

  it('the client refuses a server with another SPIFFE ID (and verifies the chain regardless)', async () => {
    const client = await newWorkload(call, 'web', 'shop');
    const srv = await startSpiffeServer({ svid: server, trust: bundle });
    const r = await spiffeHandshake(srv.port, client, bundle, 'spiffe://aegis.local/ns/shop/svc/payments');
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /server SPIFFE ID is spiffe:\/\/aegis\.local\/ns\/shop\/svc\/api/);
  });

  it('a server without the trust bundle refuses the client: an SVID alone proves nothing', async () => {
    const client = await newWorkload(call, 'web', 'shop');
    const srv = await startSpiffeServer({ svid: server, trust: readFileSync(s.caFile!, 'utf8') });
    const r = await spiffeHandshake(srv.port, client, bundle, server.spiffeId);
    assert.equal(r.ok, false);
    assert.equal(srv.tlsErrors.length, 1);
  });
});

describe('a revoked client SVID is refused', () => {
  it('by a server that checks the CRL; a client that is not revoked still gets through', async () => {
    const good = await newWorkload(call, 'web', 'shop');
    const bad = await newWorkload(call, 'web', 'shop');
    await revoke(bad);
    const crls = await crlPems();
    assert.equal(crls.length, 2, 'the intermediate’s CRL and the root’s');
    const srv = await startSpiffeServer({ svid: server, trust: bundle, crl: crls });
    const refused = await spiffeHandshake(srv.port, bad, bundle, server.spiffeId);
    assert.equal(refused.ok, false);
    assert.equal(srv.tlsErrors.length, 1, 'the server refused the handshake');
    // Node checks the CRL of every certificate in the chain (CRL_CHECK_ALL): identity/crl/pem must carry the
    // roots' CRLs too, or no client at all gets through.
    const admitted = await spiffeHandshake(srv.port, good, bundle, server.spiffeId);
    assert.deepEqual(admitted, { ok: true, reply: `hello ${good.spiffeId}` });
    // The same server without the CRL admits the revoked SVID: the refusal above was the CRL's doing.
    const blind = await startSpiffeServer({ svid: server, trust: bundle });
    assert.equal((await spiffeHandshake(blind.port, bad, bundle, server.spiffeId)).ok, true);
  });

  it('by a server that checks the revocation list after the handshake', async () => {
    const good = await newWorkload(call, 'web', 'shop');
    const bad = await newWorkload(call, 'web', 'shop');
    await revoke(bad);
    const list = await revocations();
    assert.ok(list.serials.some((e) => sameSerial(e.serial_number, bad.svid.serial_number)));
    const srv = await startSpiffeServer({
      svid: server, trust: bundle,
      admit: (peer) => (list.serials.some((e) => sameSerial(e.serial_number, peer.serialNumber)) ? `serial ${peer.serialNumber} is revoked` : null),
    });
    const refused = await spiffeHandshake(srv.port, bad, bundle, server.spiffeId);
    assert.equal(refused.ok, false);
    assert.match(refused.reply, /^refused: serial [0-9A-F]+ is revoked$/);
    assert.equal((await spiffeHandshake(srv.port, good, bundle, server.spiffeId)).ok, true);
  });
});

describe('watching the revocation list (identity/revocations?index=N&wait=…)', () => {
  it('blocks until a revocation happens, then answers with a higher index and the serial', async () => {
    const victim = await newWorkload(call, 'web', 'shop');
    const { index } = await revocations();
    let answered = false;
    const started = Date.now();
    const watch = revocations(`?index=${index}&wait=5s`).finally(() => { answered = true; });
    // Another request makes a full round trip while the watch is still waiting.
    assert.equal((await call('GET', 'identity/ca')).status, 200);
    assert.equal(answered, false, 'the watch answered before anything changed');
    await revoke(victim);
    const after = await watch;
    assert.ok(Date.now() - started < 4_500, 'answered on the change, not at the end of the wait');
    assert.ok(after.index > index, `index ${after.index} > ${index}`);
    assert.equal(after.header, String(after.index));
    assert.ok(after.serials.some((e) => sameSerial(e.serial_number, victim.svid.serial_number)));
  });

  it('answers at once when the index has already passed N', async () => {
    const { index } = await revocations();
    const started = Date.now();
    const r = await revocations(`?index=${index - 1}&wait=5s`);
    assert.equal(r.index, index);
    assert.ok(Date.now() - started < 2_000);
  });

  it('returns after about `wait` with the same index when nothing changes', async () => {
    const { index } = await revocations();
    const started = Date.now();
    const r = await revocations(`?index=${index}&wait=1s`);
    const took = Date.now() - started;
    assert.equal(r.index, index);
    assert.ok(took >= 950 && took < 3_000, `took ${took} ms`);
  });

  it('a watcher blocked when the server is sealed is answered 503 at once, never with an empty list', async () => {
    const other = await startTestServer({ tls: true });
    const call2 = identityClient(other.address, other.caFile!, other.rootToken);
    const victim = await newWorkload(call2, 'web', 'shop');
    assert.equal((await call2('POST', 'identity/revoke', { body: { serial_number: victim.svid.serial_number } })).status, 200);
    const { index } = (await call2('GET', 'identity/revocations')).body.data;
    const started = Date.now();
    const watch = call2('GET', `identity/revocations?index=${index}&wait=5s`);
    assert.equal((await call2('GET', 'identity/ca')).status, 200, 'a round trip while the watch waits');
    assert.equal((await call2('PUT', 'sys/seal')).status, 204);
    const r = await watch;
    assert.equal(r.status, 503, `sealed: ${r.text}`);
    assert.ok(Date.now() - started < 4_500, 'released by the seal, not by the end of the wait');
    await other.core.submitUnsealKey(other.keys[0]!.toString('hex'));
    const back = await call2('GET', 'identity/revocations');
    assert.ok(back.body.data.serials.some((e: { serial_number: string }) => sameSerial(e.serial_number, victim.svid.serial_number)), 'the list is back after unseal');
  });
});

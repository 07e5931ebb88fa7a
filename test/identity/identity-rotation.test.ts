import 'reflect-metadata';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeKeyAndCsr } from '../../src/identity/csr-make.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { errorOf, identityClient, newWorkload, renewOverMtls, type IdentityCall, type Workload } from './identity-client.js';
import { spiffeHandshake, startSpiffeServer } from './tls-peers.js';

// CA rotation without breaking anyone: a new root is cross-signed by the old one, so peers that still hold only the
// old bundle verify chains to the new root, while the bundle served carries both roots during the overlap.

let s: InProcessServer;
let call: IdentityCall;
let dir: string;
/** Issued before any rotation: leaf → intermediate 1 → root 1. */
let a: Workload;
let oldBundle: string;

before(async () => {
  s = await startTestServer({ tls: true });
  call = identityClient(s.address, s.caFile!, s.rootToken);
  dir = tempDir('identity-rotation');
  a = await newWorkload(call, 'a');
  oldBundle = (await call('GET', 'identity/bundle', { token: null })).text;
});

function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? [];
}

/** `openssl verify` of `w`'s leaf with its chain as untrusted certificates and only `trust` as anchors. */
function opensslVerifies(w: Workload, trust: string): boolean {
  const name = w.svid.serial_number.replace(/:/g, '').slice(0, 12);
  writeFileSync(join(dir, `${name}.trust.pem`), trust);
  writeFileSync(join(dir, `${name}.chain.pem`), w.svid.ca_chain.join(''));
  writeFileSync(join(dir, `${name}.leaf.pem`), w.svid.certificate);
  const r = spawnSync('openssl', ['verify', '-CAfile', `${name}.trust.pem`, '-untrusted', `${name}.chain.pem`, `${name}.leaf.pem`], { cwd: dir, timeout: 20_000 });
  return r.status === 0;
}

/** Runs a full mTLS exchange: `server` trusting `serverTrust`, `client` trusting `clientTrust`. */
async function mtls(server: Workload, serverTrust: string, client: Workload, clientTrust: string): Promise<void> {
  const srv = await startSpiffeServer({ svid: server, trust: serverTrust });
  const r = await spiffeHandshake(srv.port, client, clientTrust, server.spiffeId);
  assert.deepEqual(r, { ok: true, reply: `hello ${client.spiffeId}` }, `server errors: ${srv.tlsErrors.map((e) => e.message).join('; ')}`);
}

async function caStatus(): Promise<{ roots: { id: number; cross_signed: boolean }[]; intermediates: { id: number; root: number; active: boolean }[] }> {
  const r = await call('GET', 'identity/ca');
  assert.equal(r.status, 200, errorOf(r));
  return r.body.data;
}

describe('CA rotation', () => {
  it('rotate-root needs sudo: a token allowed only update on identity/ca/rotate-root gets 403 and nothing changes', async () => {
    const policy = await call('PUT', 'sys/policies/cedar/rotate-nosudo', {
      body: { policy: '@id("rotate") permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"identity/ca/rotate-root");' },
    });
    assert.equal(policy.status, 204, errorOf(policy));
    const tok = await call('POST', 'auth/token/create', { body: { policies: ['rotate-nosudo'] } });
    assert.equal(tok.status, 200, errorOf(tok));
    const r = await call('POST', 'identity/ca/rotate-root', { token: tok.body.auth.client_token });
    assert.equal(r.status, 403);
    assert.match(errorOf(r), /identity\/ca\/rotate-root also needs the sudo action/);
    assert.equal((await caStatus()).roots.length, 1);
  });

  describe('rotate-root', () => {
    let b: Workload;
    let newBundle: string;

    before(async () => {
      const r = await call('POST', 'identity/ca/rotate-root');
      assert.equal(r.status, 200, errorOf(r));
      newBundle = (await call('GET', 'identity/bundle', { token: null })).text;
      b = await newWorkload(call, 'b');
    });

    it('makes a second root, cross-signed by the first, and an active intermediate under it', async () => {
      const ca = await caStatus();
      assert.deepEqual(ca.roots.map((r) => [r.id, r.cross_signed]), [[1, false], [2, true]]);
      assert.deepEqual(ca.intermediates.map((i) => [i.id, i.root, i.active]), [[1, 1, false], [2, 2, true]]);
    });

    it('the bundle carries both roots, the old one first; the SPIFFE bundle too', async () => {
      const roots = pemBlocks(newBundle).map((p) => new X509Certificate(p));
      assert.equal(roots.length, 2);
      assert.ok(roots[0]!.raw.equals(new X509Certificate(oldBundle).raw));
      const spiffe = (await call('GET', 'identity/bundle/spiffe', { token: null })).body;
      assert.equal(spiffe.keys.filter((k: { use: string }) => k.use === 'x509-svid').length, 2);
      assert.ok(spiffe.spiffe_sequence >= 2);
    });

    it('B is served with the new intermediate and the new root cross-signed by the old one', () => {
      assert.equal(b.svid.ca_chain.length, 2);
      const [inter, cross] = b.svid.ca_chain.map((p) => new X509Certificate(p));
      const [oldRoot, newRoot] = pemBlocks(newBundle).map((p) => new X509Certificate(p));
      assert.ok(new X509Certificate(b.svid.certificate).checkIssued(inter!));
      assert.equal(cross!.subject, newRoot!.subject);
      assert.ok(cross!.publicKey.equals(newRoot!.publicKey));
      assert.ok(cross!.checkIssued(oldRoot!) && cross!.verify(oldRoot!.publicKey));
      assert.ok(inter!.verify(newRoot!.publicKey));
    });

    it('a client holding only the old bundle verifies a server presenting B, and completes mTLS', async () => {
      assert.ok(opensslVerifies(b, oldBundle));
      await mtls(b, newBundle, a, oldBundle);
    });

    it('a server trusting only the old bundle admits a client presenting B', async () => {
      await mtls(a, oldBundle, b, newBundle);
    });

    it('holders of the new bundle verify both A and B', async () => {
      assert.ok(opensslVerifies(a, newBundle));
      assert.ok(opensslVerifies(b, newBundle));
      await mtls(a, newBundle, b, newBundle);
      await mtls(b, newBundle, a, newBundle);
    });

    it('the new root alone verifies B but not A: why the bundle keeps the old root until it expires', () => {
      const newRootOnly = pemBlocks(newBundle)[1]!;
      assert.ok(opensslVerifies(b, newRootOnly));
      assert.equal(opensslVerifies(a, newRootOnly), false);
    });

    it('a peer that checks CRLs still accepts chains through the cross-signed root', async () => {
      const r = await call('GET', 'identity/crl/pem', { token: null });
      const crls = r.text.match(/-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----\n/g) ?? [];
      assert.equal(crls.length, 4, 'two intermediates and two roots');
      const srv = await startSpiffeServer({ svid: a, trust: oldBundle, crl: crls });
      assert.equal((await spiffeHandshake(srv.port, b, newBundle, a.spiffeId)).ok, true, srv.tlsErrors.map((e) => e.message).join('; '));
    });

    it('A and B both renew over mutual TLS', async () => {
      for (const w of [a, b]) {
        const r = await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem);
        assert.equal(r.status, 200, errorOf(r));
        assert.equal(r.body.data.ca_chain.length, 2, 'renewed under the new root');
      }
    });

    describe('then rotate-intermediate', () => {
      let c: Workload;

      before(async () => {
        const r = await call('POST', 'identity/ca/rotate-intermediate');
        assert.equal(r.status, 200, errorOf(r));
        c = await newWorkload(call, 'c');
      });

      it('C comes from a third intermediate, under the new root; GET identity/ca shows 2 roots and it active', async () => {
        const ca = await caStatus();
        assert.equal(ca.roots.length, 2);
        assert.deepEqual(ca.intermediates.map((i) => [i.id, i.root, i.active]), [[1, 1, false], [2, 2, false], [3, 2, true]]);
        assert.equal(c.svid.ca_chain.length, 2);
        assert.notEqual(c.svid.ca_chain[0], b.svid.ca_chain[0]);
        assert.equal(c.svid.ca_chain[1], b.svid.ca_chain[1], 'the same cross-signed root');
        assert.equal((await call('GET', 'identity/bundle', { token: null })).text, newBundle, 'the bundle is unchanged');
      });

      it('A, B and C all verify and talk to each other', async () => {
        for (const w of [a, b, c]) assert.ok(opensslVerifies(w, newBundle), w.spiffeId);
        assert.ok(opensslVerifies(c, oldBundle));
        await mtls(c, newBundle, a, oldBundle);
        await mtls(a, oldBundle, c, newBundle);
        await mtls(b, newBundle, c, newBundle);
        for (const w of [a, b, c]) assert.equal((await renewOverMtls(call, w, (await makeKeyAndCsr()).csrPem)).status, 200);
      });
    });
  });
});

describe('concurrent rotations', () => {
  it('never lose one another: every rotation reported as done is in the CA, the rest are told to retry', async () => {
    const other = await startTestServer({ tls: true });
    const call2 = identityClient(other.address, other.caFile!, other.rootToken);
    const results = await Promise.all(['rotate-root', 'rotate-root', 'rotate-intermediate', 'rotate-root'].map((op) => call2('POST', `identity/ca/${op}`)));
    const done = results.filter((r) => r.status === 200);
    assert.ok(done.length >= 1);
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 400);
      assert.match(errorOf(r), /the CA changed while rotating .*; retry/);
    }
    const ca = (await call2('GET', 'identity/ca')).body.data as { roots: { serial_number: string }[]; intermediates: { serial_number: string }[] };
    assert.equal(ca.intermediates.length, 1 + done.length, 'each rotation made one intermediate, and all of them are kept');
    for (const r of done) {
      const reported = r.body.data as typeof ca;
      for (const root of reported.roots) assert.ok(ca.roots.some((x) => x.serial_number === root.serial_number), `root ${root.serial_number} was reported and kept`);
      for (const i of reported.intermediates) assert.ok(ca.intermediates.some((x) => x.serial_number === i.serial_number), `intermediate ${i.serial_number} was reported and kept`);
    }
    const bundle = (await call2('GET', 'identity/bundle', { token: null })).text;
    assert.equal(pemBlocks(bundle).length, ca.roots.length, 'the bundle serves exactly the roots the CA holds');
  });
});

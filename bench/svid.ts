// X.509-SVID issuance over HTTPS with the file audit device on: CSR in, certificate out (the server verifies the
// CSR's signature and signs the leaf), 16 concurrent keep-alive clients, 10 s; and in the same run the physical
// limit on one core: one ECDSA P-256 signature plus one verification with node:crypto. Prints one JSON line.
// Target on 2 cores: >= 50 % of that limit.
// Flags: --seconds N (default 10), --clients N (16).
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { makeKeyAndCsr } from '../src/identity/csr-make.js';
import { flag } from './lib/args.js';
import { round } from './lib/load.js';
import { startBenchServer } from './lib/aegis-server.js';
import { load } from './lib/wrk.js';

const SECONDS = flag('seconds', 10);
const CLIENTS = flag('clients', 16);

/** Sign + verify pairs per second on one core, over a message the size of a leaf's TBSCertificate. */
function signVerifyLimit(ms: number): number {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const msg = randomBytes(420);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 100; i++) {
      const sig = sign('sha256', msg, privateKey);
      if (!verify('sha256', msg, publicKey, sig)) throw new Error('verify failed');
      n++;
    }
  }
  return n / ((performance.now() - t0) / 1000);
}

const { server, anon, api, stop } = await startBenchServer('svid', { trust_domain: 'bench.example' });
try {
  // Attest once with a join token: the answer carries a workload token bound to the SPIFFE ID; the load then
  // renews with it (each request a fresh CSR signature check and a fresh leaf).
  const jt = (await api.ok('POST', 'identity/join-token', { body: { service: 'bench' } })).body as { data: { token: string } };
  const first = await makeKeyAndCsr();
  const att = (await anon.ok('POST', 'identity/attest/join-token', { body: { join_token: jt.data.token, csr: first.csrPem, ttl: '24h' } })).body as { auth: { client_token: string } };
  const headers = { 'x-vault-token': att.auth.client_token };
  // Distinct CSRs (distinct keys), cycled through.
  const csrs = await Promise.all(Array.from({ length: 64 }, () => makeKeyAndCsr()));
  const calls = csrs.map((c) => ({ method: 'POST', path: '/v1/identity/svid', headers, body: JSON.stringify({ csr: c.csrPem }) }));
  const target = { base: server.address, ca: server.ca, clients: CLIENTS };
  await load(target, 2, calls);
  const svids = await load(target, SECONDS, calls);

  const limit = signVerifyLimit(3000);
  const line = {
    bench: 'svid',
    transport: 'https (TLS 1.3, keep-alive)',
    audit: 'file device on',
    clients: CLIENTS,
    seconds: SECONDS,
    svids,
    anchor: { p256_sign_plus_verify_per_s_one_core: round(limit, 0) },
    ratio_to_limit: round(svids.ops_per_s / limit, 4),
    target: { ratio_to_limit: 0.5 },
    target_met: svids.ops_per_s >= 0.5 * limit && svids.errors === 0,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await stop();
}

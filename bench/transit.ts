// Transit encrypt, then decrypt, of 1 KiB payloads over HTTPS with a file audit device on, from 32 concurrent
// keep-alive clients; and in the same run the raw in-process AES-256-GCM encrypt + decrypt rate of the same
// payloads with node:crypto on one core (the crypto anchor). Prints one JSON line.
// Flags: --seconds N (default 10), --clients N (32), --payloads N (distinct payloads cycled, 256).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { flag } from './lib/args.js';
import { round } from './lib/load.js';
import { load } from './lib/wrk.js';
import { startBenchServer } from './lib/aegis-server.js';

const SECONDS = flag('seconds', 10);
const CLIENTS = flag('clients', 32);
const PAYLOADS = flag('payloads', 256);
const SIZE = 1024;

const payloads = Array.from({ length: PAYLOADS }, () => randomBytes(SIZE));

/** encrypt + decrypt pairs per second of one 1 KiB payload, AES-256-GCM with a fresh 96-bit nonce, on this thread. */
function anchor(ms: number): number {
  const key = randomBytes(32);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let j = 0; j < 200; j++) {
      const plaintext = payloads[n++ % payloads.length]!;
      const nonce = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, nonce);
      const sealed = Buffer.concat([c.update(plaintext), c.final()]);
      const tag = c.getAuthTag();
      const d = createDecipheriv('aes-256-gcm', key, nonce);
      d.setAuthTag(tag);
      const opened = Buffer.concat([d.update(sealed), d.final()]);
      if (opened.length !== SIZE) throw new Error('anchor round trip failed');
    }
  }
  return n / ((performance.now() - t0) / 1000);
}

const { server, api, rootToken, stop } = await startBenchServer('transit');
try {
  await api.ok('POST', 'sys/mounts/transit', { body: { type: 'transit' } });
  await api.ok('POST', 'transit/keys/bench', { body: { type: 'aes256-gcm96' } });
  const plaintexts = payloads.map((p) => p.toString('base64'));
  const ciphertexts: string[] = [];
  for (const plaintext of plaintexts) {
    ciphertexts.push(((await api.ok('POST', 'transit/encrypt/bench', { body: { plaintext } })).body!.data as { ciphertext: string }).ciphertext);
  }
  // The API really round-trips before anything is measured.
  const check = (await api.ok('POST', 'transit/decrypt/bench', { body: { ciphertext: ciphertexts[0] } })).body!.data as { plaintext: string };
  if (check.plaintext !== plaintexts[0]) throw new Error('transit decrypt did not return the plaintext');

  const headers = { 'x-vault-token': rootToken };
  const target = { base: server.address, ca: server.ca, clients: CLIENTS };
  const encryptCalls = plaintexts.map((plaintext) => ({ method: 'POST', path: '/v1/transit/encrypt/bench', headers, body: JSON.stringify({ plaintext }) }));
  const decryptCalls = ciphertexts.map((ciphertext) => ({ method: 'POST', path: '/v1/transit/decrypt/bench', headers, body: JSON.stringify({ ciphertext }) }));
  // A short warm-up so the JIT has compiled the hot paths before anything is measured.
  await load(target, 2, encryptCalls);
  const encrypt = await load(target, SECONDS, encryptCalls);
  const decrypt = await load(target, SECONDS, decryptCalls);

  // The anchor, measured with the server idle.
  anchor(300);
  const aesPairs = anchor(2000);

  const line = {
    bench: 'transit',
    transport: 'https (TLS 1.3, keep-alive)',
    audit: 'file device on',
    payload_bytes: SIZE,
    clients: CLIENTS,
    seconds: SECONDS,
    encrypt,
    decrypt,
    anchor: { aes256gcm_encrypt_decrypt_per_s: round(aesPairs, 0), note: 'in-process node:crypto, one core, same 1 KiB payloads' },
    ratio_encrypt_to_anchor: round(encrypt.ops_per_s / aesPairs, 4),
    ratio_decrypt_to_anchor: round(decrypt.ops_per_s / aesPairs, 4),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await stop();
}

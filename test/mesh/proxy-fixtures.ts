import 'reflect-metadata';
import { spawn } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { createIntermediate, createRoot, loadCa, x509, type LoadedCa } from '../../src/identity/ca-certs.js';
import { LeafBuilder } from '../../src/identity/leaf-builder.js';
import { toPem } from '../../src/identity/pem.js';
import { PeerVerifier, type ProxyCredentials, type ProxyEvent } from '../../src/mesh/proxy/index.js';
import { onCleanup } from '../helpers/cleanup.js';

// Real PKI for the proxy tests: a trust domain's root and intermediate made by Aegis's CA code (ca-certs.ts), leaves
// by its SVID fast path (leaf-builder.ts), and the deviant certificates a hostile peer would present.

export const MINUTE = 60_000;
export const DAY = 86_400_000;
const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TrustDomainCa {
  trustDomain: string;
  root: LoadedCa;
  intermediate: LoadedCa;
  bundlePem: string;
}

export interface TestSvid extends ProxyCredentials {
  spiffeId: string;
  /** Lowercase hex. */
  serial: string;
}

const builder = new LeafBuilder();

export async function makeTrustDomain(trustDomain: string): Promise<TrustDomainCa> {
  const now = Date.now();
  const spec = { trustDomain, keyType: 'p256' as const, notBefore: new Date(now - 10 * DAY), notAfter: new Date(now + 365 * DAY) };
  const root = await loadCa(await createRoot({ ...spec, commonName: `${trustDomain} root` }));
  const intermediate = await loadCa(await createIntermediate(root, { ...spec, commonName: `${trustDomain} intermediate` }));
  return { trustDomain, root, intermediate, bundlePem: root.certPem.trimEnd() + '\n' };
}

/** An X509-SVID for `service` (ns default) from the domain's intermediate; validity defaults to now−1 min … now+1 h. */
export function issueSvid(ca: TrustDomainCa, service: string, validity: { notBefore?: number; notAfter?: number } = {}): TestSvid {
  const spiffeId = `spiffe://${ca.trustDomain}/ns/default/svc/${service}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const leaf = builder.build({ certDer: ca.intermediate.certDer, key: ca.intermediate.keyObject }, {
    spiffeId, spki, keyType: 'p256',
    notBefore: new Date(validity.notBefore ?? Date.now() - MINUTE),
    notAfter: new Date(validity.notAfter ?? Date.now() + 60 * MINUTE),
  });
  return {
    spiffeId,
    serial: leaf.serial.toString('hex'),
    certChainPem: toPem(leaf.der) + ca.intermediate.certPem.trimEnd() + '\n',
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    bundlePem: ca.bundlePem,
  };
}

/** The revocations a test flips: the verifier consults these sets on every check. */
export interface Revocations {
  serials: Set<string>;
  ids: Set<string>;
}

/**
 * What the proxy tests share: the trust domain example.org, a peer verifier that consults `revoked`, and SVIDs for
 * api (the upstream side) and web (the caller).
 */
export async function meshWorld(revoked: Revocations = { serials: new Set(), ids: new Set() }): Promise<{ ca: TrustDomainCa; verifier: PeerVerifier; apiSvid: TestSvid; webSvid: TestSvid }> {
  const ca = await makeTrustDomain('example.org');
  const verifier = new PeerVerifier({ trustDomain: 'example.org', isSerialRevoked: (s) => revoked.serials.has(s), isIdRevoked: (id) => revoked.ids.has(id) });
  return { ca, verifier, apiSvid: issueSvid(ca, 'api'), webSvid: issueSvid(ca, 'web') };
}

async function peculiarKeys(): Promise<{ keys: webcrypto.CryptoKeyPair; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  return { keys, keyPem: toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY') };
}

/** A leaf signed by the real intermediate with basicConstraints CA:true (X509-SVID §4.1 forbids it). */
export async function caTrueLeaf(ca: TrustDomainCa, service: string): Promise<TestSvid> {
  const spiffeId = `spiffe://${ca.trustDomain}/ns/default/svc/${service}`;
  const { keys, keyPem } = await peculiarKeys();
  const serial = '5a' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex');
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${service}`,
    issuer: ca.intermediate.cert.subject,
    notBefore: new Date(Date.now() - MINUTE),
    notAfter: new Date(Date.now() + 60 * MINUTE),
    publicKey: keys.publicKey,
    signingKey: ca.intermediate.cryptoKey,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.intermediate.cert),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
    ],
  });
  return { spiffeId, serial, certChainPem: cert.toString('pem') + '\n' + ca.intermediate.certPem, keyPem, bundlePem: ca.bundlePem };
}

/** A self-signed certificate claiming a SPIFFE ID of the trust domain: anyone can make one. */
export async function selfSignedSvid(trustDomain: string, service: string): Promise<TestSvid> {
  const spiffeId = `spiffe://${trustDomain}/ns/default/svc/${service}`;
  const { keys, keyPem } = await peculiarKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '7b01',
    name: `CN=${service}`,
    notBefore: new Date(Date.now() - MINUTE),
    notAfter: new Date(Date.now() + 60 * MINUTE),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
    ],
  });
  return { spiffeId, serial: '7b01', certChainPem: cert.toString('pem') + '\n', keyPem, bundlePem: '' };
}

/** A TCP echo app on 127.0.0.1 that counts the connections it received. */
export async function startEchoApp(): Promise<{ port: number; connections: () => number }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    n++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(r));
  });
  return { port: (server.address() as AddressInfo).port, connections: () => n };
}

/** Collects proxy events; `next` resolves with the first one (already seen or to come) matching, or rejects after `ms`. */
export class EventLog {
  readonly all: ProxyEvent[] = [];
  private waiters: { pred: (e: ProxyEvent) => boolean; resolve: (e: ProxyEvent) => void }[] = [];
  private seen = 0;

  readonly sink = (e: ProxyEvent): void => {
    this.all.push(e);
    for (const w of [...this.waiters]) {
      if (w.pred(e)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  };

  /** Forgets the events so far: `next` then only looks at later ones. */
  mark(): void {
    this.seen = this.all.length;
  }

  next(pred: (e: ProxyEvent) => boolean = () => true, ms = 5_000): Promise<ProxyEvent> {
    const found = this.all.slice(this.seen).find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`no matching proxy event within ${ms} ms; got ${JSON.stringify(this.all.slice(this.seen))}`));
      }, ms);
      const done = (e: ProxyEvent) => {
        clearTimeout(timer);
        resolve(e);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }
}

/** Writes an SVID's chain and key to `dir` for the openssl and curl CLIs. */
export function svidFiles(dir: string, name: string, svid: ProxyCredentials): { cert: string; key: string; chain: string } {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`), chain: join(dir, `${name}-chain.crt`) };
  writeFileSync(files.cert, svid.certChainPem);
  // s_client sends only the first certificate of -cert; the intermediates go in -cert_chain.
  const blocks = svid.certChainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n?/g) ?? [];
  writeFileSync(files.chain, blocks.slice(1).join('\n'));
  writeFileSync(files.key, svid.keyPem, { mode: 0o600 });
  return files;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a CLI client, writing `input` to its stdin and keeping stdin open (so openssl s_client ends only when the
 * server closes, or until stdout matches `endOn`); killed after `ms`.
 */
export function runClient(cmd: string, args: string[], input = '', ms = 8_000, endOn?: RegExp): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      // The answer came: closing stdin makes s_client send close_notify and exit.
      if (endOn?.test(stdout)) child.stdin.end();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdin.on('error', () => {});
    if (input) child.stdin.write(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import type { SecureStore } from '../core/barrier/index.js';
import { BadRequestError, TxnConflictError } from '../core/errors.js';
import { createIntermediate, createRoot, loadCa, signCaCertificate, x509, type CaKeyType, type CaMaterial, type LoadedCa } from './ca-certs.js';
import { toPem } from './pem.js';
import { validateTrustDomain } from './spiffe-id.js';

// The trust domain's CA, kept as one document inside the barrier (so CA keys never exist outside it):
// roots (10 y) → intermediates (1 y) → workload leaves. Rotation appends; nothing is rewritten in place.
// A new root is cross-signed by the previous one, so a chain to the new root also verifies for holders of the
// old bundle during the overlap; the bundle carries every root that has not expired.

const CA_KEY = 'ca';
const YEAR_MS = 365 * 24 * 3600 * 1000;
const ROOT_TTL_MS = 10 * YEAR_MS;
const INTERMEDIATE_TTL_MS = YEAR_MS;
// Certificates are valid from a little before now: clocks of peers differ.
const BACKDATE_MS = 60_000;

interface RootRecord {
  id: number;
  material: CaMaterial;
  /** This root's certificate signed by the previous root (PEM), when there was one. */
  crossPem?: string;
}

interface IntermediateRecord {
  id: number;
  rootId: number;
  material: CaMaterial;
}

interface JwtKeyRecord {
  kid: string;
  /** PKCS#8 DER, base64. */
  key: string;
  createdAt: string;
}

interface CaState {
  trustDomain: string;
  keyType: CaKeyType;
  roots: RootRecord[];
  intermediates: IntermediateRecord[];
  jwtKeys: JwtKeyRecord[];
  /** Bumped on every change of the bundle (SPIFFE bundle `spiffe_sequence`). */
  sequence: number;
}

export interface Issuer extends LoadedCa {
  id: number;
  /** DER certificates a leaf of this issuer is served with after itself: the intermediate, then the root's cross-signed certificate. */
  chain: Buffer[];
  /** The same, as PEM: what every issuance answers with, encoded once. */
  chainPem: string[];
}

export interface JwtKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface CaStatus {
  trust_domain: string;
  key_type: CaKeyType;
  roots: { id: number; serial_number: string; not_after: string; cross_signed: boolean }[];
  intermediates: { id: number; root: number; serial_number: string; not_after: string; active: boolean }[];
}

export class CaManager {
  private state: CaState | null = null;
  private version = 0;
  private roots = new Map<number, LoadedCa>();
  private issuers = new Map<number, Issuer>();
  private jwt: JwtKey[] = [];

  constructor(private readonly store: SecureStore) {}

  /** Loads the CA, creating it (trust domain `trustDomain`) on first unseal. */
  async setup(trustDomain: string, keyType: CaKeyType = 'p256'): Promise<void> {
    const existing = await this.store.get(CA_KEY);
    if (existing) return this.load(JSON.parse(existing.value.toString('utf8')) as CaState, existing.version);
    validateTrustDomain(trustDomain);
    const now = Date.now();
    const rootSpec = { trustDomain, keyType, commonName: 'Aegis Root CA 1', notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + ROOT_TTL_MS) };
    const root: RootRecord = { id: 1, material: await createRoot(rootSpec) };
    const loadedRoot = await loadCa(root.material);
    const inter = await createIntermediate(loadedRoot, { ...rootSpec, commonName: 'Aegis Intermediate CA 1', notAfter: new Date(now + INTERMEDIATE_TTL_MS) });
    const state: CaState = {
      trustDomain, keyType, roots: [root], intermediates: [{ id: 1, rootId: 1, material: inter }], jwtKeys: [newJwtKey()], sequence: 1,
    };
    try {
      const version = await this.store.txn([{ type: 'check', key: CA_KEY, version: 0 }, { type: 'put', key: CA_KEY, value: state }]);
      await this.load(state, version);
    } catch (err) {
      // Another server made it first: use that one.
      if (!(err instanceof TxnConflictError)) throw err;
      const made = await this.store.get(CA_KEY);
      await this.load(JSON.parse(made!.value.toString('utf8')) as CaState, made!.version);
    }
  }

  teardown(): void {
    this.state = null;
    this.roots.clear();
    this.issuers.clear();
    this.jwt = [];
  }

  /** Re-reads the CA after another server changed it. */
  async reload(): Promise<void> {
    const got = await this.store.get(CA_KEY);
    if (got && got.version !== this.version) await this.load(JSON.parse(got.value.toString('utf8')) as CaState, got.version);
  }


  get trustDomain(): string {
    return this.must().trustDomain;
  }

  get sequence(): number {
    return this.must().sequence;
  }

  get ready(): boolean {
    return this.state !== null;
  }

  /** The intermediate that signs new leaves. */
  activeIssuer(): Issuer {
    const s = this.must();
    return this.issuers.get(s.intermediates[s.intermediates.length - 1]!.id)!;
  }

  /** Every intermediate not yet expired: leaves of any of them are still valid. */
  liveIssuers(now = Date.now()): Issuer[] {
    return [...this.issuers.values()].filter((i) => i.notAfter.getTime() > now);
  }

  /** Root certificates not yet expired: the trust bundle. */
  bundle(now = Date.now()): LoadedCa[] {
    return [...this.roots.values()].filter((r) => r.notAfter.getTime() > now);
  }

  bundlePem(): string {
    return this.bundle().map((r) => r.certPem.trim()).join('\n') + '\n';
  }

  /** The issuer whose key signed `cert`, if it is one of ours and still valid. */
  issuerOf(cert: X509Certificate): Issuer | null {
    for (const i of this.liveIssuers()) {
      if (cert.issuer !== i.nodeCert.subject) continue;
      if (cert.verify(i.nodeCert.publicKey)) return i;
    }
    return null;
  }

  jwtSigningKey(): JwtKey {
    return this.jwt[this.jwt.length - 1]!;
  }

  jwtPublicKeys(): { kid: string; publicKey: KeyObject }[] {
    return this.jwt.map((k) => ({ kid: k.kid, publicKey: k.publicKey }));
  }

  status(): CaStatus {
    const s = this.must();
    const active = this.activeIssuer().id;
    return {
      trust_domain: s.trustDomain,
      key_type: s.keyType,
      roots: s.roots.map((r) => ({ id: r.id, serial_number: this.roots.get(r.id)!.cert.serialNumber, not_after: this.roots.get(r.id)!.notAfter.toISOString(), cross_signed: r.crossPem !== undefined })),
      intermediates: s.intermediates.map((i) => ({
        id: i.id, root: i.rootId, serial_number: this.issuers.get(i.id)!.cert.serialNumber, not_after: this.issuers.get(i.id)!.notAfter.toISOString(), active: i.id === active,
      })),
    };
  }

  /** A new intermediate from the current root; leaves of the old one stay valid until they expire. */
  async rotateIntermediate(): Promise<CaStatus> {
    return this.update(async (s) => {
      const root = s.roots[s.roots.length - 1]!;
      const id = Math.max(...s.intermediates.map((i) => i.id)) + 1;
      const material = await createIntermediate(this.roots.get(root.id)!, this.spec(s, `Aegis Intermediate CA ${id}`, INTERMEDIATE_TTL_MS));
      s.intermediates.push({ id, rootId: root.id, material });
    });
  }

  /**
   * A new root, cross-signed by the current one, and a new intermediate under it. Both roots stay in the bundle
   * until the old one expires, so peers holding either bundle verify chains to either root during the overlap.
   */
  async rotateRoot(): Promise<CaStatus> {
    return this.update(async (s) => {
      const previous = this.roots.get(s.roots[s.roots.length - 1]!.id)!;
      const id = Math.max(...s.roots.map((r) => r.id)) + 1;
      const material = await createRoot(this.spec(s, `Aegis Root CA ${id}`, ROOT_TTL_MS));
      const loaded = await loadCa(material);
      const cross = await signCaCertificate(previous, { name: loaded.cert.subject, publicKey: loaded.cert.publicKey }, {
        trustDomain: s.trustDomain, notBefore: new Date(Date.now() - BACKDATE_MS), notAfter: loaded.notAfter,
      });
      // Not put into this.roots here: the live maps change only by load() after the write commits.
      s.roots.push({ id, material, crossPem: cross.toString('pem') });
      const interId = Math.max(...s.intermediates.map((i) => i.id)) + 1;
      const inter = await createIntermediate(loaded, this.spec(s, `Aegis Intermediate CA ${interId}`, INTERMEDIATE_TTL_MS));
      s.intermediates.push({ id: interId, rootId: id, material: inter });
    });
  }

  private spec(s: CaState, commonName: string, ttlMs: number) {
    const now = Date.now();
    return { trustDomain: s.trustDomain, keyType: s.keyType, commonName, notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + ttlMs) };
  }

  private async update(change: (s: CaState) => Promise<void>): Promise<CaStatus> {
    // The write must hold only if the CA is still the one this change was made from: the version is taken with
    // the copy, not after the (slow, key-generating) change, when a concurrent rotation may have loaded its own.
    const base = this.version;
    const s = structuredClone(this.must());
    await change(s);
    s.sequence += 1;
    try {
      const version = await this.store.txn([{ type: 'check', key: CA_KEY, version: base }, { type: 'put', key: CA_KEY, value: s }]);
      await this.load(s, version);
    } catch (err) {
      if (err instanceof TxnConflictError) throw new BadRequestError('the CA changed while rotating (another rotation ran at the same time); retry');
      throw err;
    }
    return this.status();
  }

  private async load(s: CaState, version: number): Promise<void> {
    const roots = new Map<number, LoadedCa>();
    for (const r of s.roots) roots.set(r.id, await loadCa(r.material));
    const issuers = new Map<number, Issuer>();
    for (const i of s.intermediates) {
      const loaded = await loadCa(i.material);
      const cross = s.roots.find((r) => r.id === i.rootId)?.crossPem;
      const chain = [loaded.certDer];
      if (cross) chain.push(Buffer.from(new x509.X509Certificate(cross).rawData));
      issuers.set(i.id, { ...loaded, id: i.id, chain, chainPem: chain.map((c) => toPem(c)) });
    }
    this.state = s;
    this.version = version;
    this.roots = roots;
    this.issuers = issuers;
    this.jwt = s.jwtKeys.map((k) => {
      const privateKey = createPrivateKey({ key: Buffer.from(k.key, 'base64'), format: 'der', type: 'pkcs8' });
      return { kid: k.kid, privateKey, publicKey: createPublicKey(privateKey) };
    });
  }

  private must(): CaState {
    if (!this.state) throw new Error('the identity CA is not loaded (sealed?)');
    return this.state;
  }
}

function newJwtKey(): JwtKeyRecord {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid: randomBytes(16).toString('hex'), key: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'), createdAt: new Date().toISOString() };
}

import { X509Certificate } from 'node:crypto';
import type { SecureStore } from '../core/barrier/index.js';
import { BadRequestError, NotFoundError, PermissionDeniedError } from '../core/errors.js';
import type { Caller, Request } from '../core/request.js';
import type { Storage } from '../core/storage/index.js';
import type { SecurityEvent, SecurityEvents } from '../detect/index.js';
import type { Logger } from '../telemetry/index.js';
import { JoinTokens } from './attest/join-tokens.js';
import { JwtAttestor, validateIssuerConfig, type JwtIssuerConfig } from './attest/jwt-attestor.js';
import { CaManager } from './ca.js';
import { createCrl, type CaKeyType, type LoadedCa } from './ca-certs.js';
import { CertRecords } from './cert-records.js';
import { parseCsr, type ParsedCsr } from './csr.js';
import { jwtBundle, signJwtSvid, validateJwtSvid } from './jwt-svid.js';
import { IssuePool } from './issue-pool.js';
import { formatSerial } from './leaf-builder.js';
import { toPem } from './pem.js';
import { Revocations, serialKey } from './revocations.js';
import { SIDECAR_SUFFIX } from '../catalog/model.js';
import { parseSpiffeId, workloadOf, workloadSpiffeId } from './spiffe-id.js';

export const SVID_TTL = { default: 3600, min: 300, max: 24 * 3600 } as const;
export const JWT_SVID_TTL = { default: 300, min: 30, max: 3600 } as const;
// Certificates start a little in the past: peers' clocks differ.
const BACKDATE_MS = 30_000;
const ATTESTORS = 'attestors/jwt/';

export interface SvidResult {
  spiffe_id: string;
  certificate: string;
  ca_chain: string[];
  bundle: string;
  serial_number: string;
  /** Unix seconds. */
  expiration: number;
}

export interface IdentityDeps {
  /** The identity engine's private storage (`identity/` in the barrier). */
  store: SecureStore;
  /** The raw storage, for the change feed. */
  storage: Storage;
  events: SecurityEvents;
  logger: Logger;
  /** The trust domain a new CA is made for (first unseal after init); an existing CA keeps its own. */
  trustDomain: string;
  keyType?: CaKeyType;
  /** Worker threads that verify CSRs and sign leaves (0: on the main thread). Started on first use. */
  issueWorkers?: number;
}

/**
 * Workload identity: the trust domain's CA, SVID issuance (X.509 and JWT), attestation, revocation and the
 * artefacts outside tools read (bundle, CRL, JWKS). Routes (routes.ts) and the Vault PKI subset use this.
 */
export class IdentityService {
  readonly ca: CaManager;
  readonly revocations: Revocations;
  readonly records: CertRecords;
  readonly joinTokens: JoinTokens;
  readonly events: SecurityEvents;
  private pool: IssuePool | null = null;
  private readonly attestors = new Map<string, JwtAttestor>();
  private readonly verifiedPeers = new WeakMap<X509Certificate, { spiffeId: string; serial: string; notAfter: number }>();
  private crls = new Map<string, { der: Buffer; index: number; madeAt: number }>();
  private unsubscribe: (() => void) | null = null;
  /** This server's public URL (the JWT-SVID issuer and OIDC discovery base), once known. */
  issuerUrl: string | null = null;

  /** Set by `init` before the first unseal: the trust domain and key type the CA is made with. */
  setInitialTrustDomain(trustDomain: string, keyType?: CaKeyType): void {
    this.d.trustDomain = trustDomain;
    if (keyType) this.d.keyType = keyType;
  }

  constructor(private readonly d: IdentityDeps) {
    this.ca = new CaManager(d.store);
    this.revocations = new Revocations(d.store);
    this.records = new CertRecords(d.store);
    this.joinTokens = new JoinTokens(d.store);
    this.events = d.events;
  }

  async setup(): Promise<void> {
    await this.ca.setup(this.d.trustDomain, this.d.keyType);
    await this.revocations.setup();
    const prefix = 'identity/';
    this.unsubscribe = this.d.storage.subscribe((changes) => {
      for (const c of changes) {
        if (!c.key.startsWith(prefix)) continue;
        const key = c.key.slice(prefix.length);
        if (key === 'ca') void this.ca.reload().catch((err) => this.d.logger.error({ err: (err as Error).message }, 'reloading the CA failed'));
        else if (key.startsWith('revoked/')) void this.revocations.changed(key, c.index).catch(() => undefined);
        else if (key.startsWith(ATTESTORS)) this.attestors.delete(key.slice(ATTESTORS.length));
      }
    });
  }

  teardown(): void {
    void this.pool?.close();
    this.pool = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.ca.teardown();
    this.revocations.teardown();
    this.attestors.clear();
    this.crls.clear();
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  workloadId(namespace: string, service: string): string {
    return workloadSpiffeId(this.ca.trustDomain, namespace, service);
  }

  // ── X.509-SVIDs ──────────────────────────────────────────────────────────────────────────────

  /**
   * Checks what a request for an SVID brings (CSR, ttl) without issuing anything. Attestation runs it before it
   * spends a join token, so a workload whose request was malformed can correct it and retry with the same token.
   */
  checkSvidRequest(spiffeId: string, csr: unknown, ttlSeconds: number | undefined): ParsedCsr & { ttl: number } {
    if (typeof csr !== 'string' || csr === '') throw new BadRequestError('csr is required: a PEM PKCS#10 certificate request made with the workload’s own key');
    const ttl = checkTtl(ttlSeconds, SVID_TTL, 'ttl');
    return { ...parseCsr(csr, { expectedSpiffeId: spiffeId }), ttl };
  }

  /** The SVID lifetime asked for (default 1 h), or a refusal when it is outside 5m … 24h. */
  checkSvidTtl(ttlSeconds: number | undefined): number {
    return checkTtl(ttlSeconds, SVID_TTL, 'ttl');
  }

  /** Signs a workload's CSR for `spiffeId` (the attested identity; the CSR never decides it). */
  async issueSvid(spiffeId: string, csr: unknown, ttlSeconds: number | undefined): Promise<SvidResult> {
    this.refuseRevoked(spiffeId);
    if (typeof csr !== 'string' || csr === '') throw new BadRequestError('csr is required: a PEM PKCS#10 certificate request made with the workload’s own key');
    const ttl = checkTtl(ttlSeconds, SVID_TTL, 'ttl');
    const issuer = this.ca.activeIssuer();
    const now = Date.now();
    const wanted = new Date(Math.min(now + ttl * 1000, issuer.notAfter.getTime()));
    // The CSR is parsed and verified where the leaf is signed (a worker thread, see issue-pool.ts).
    this.pool ??= new IssuePool(this.d.issueWorkers ?? 0);
    const { der, serial, notAfter } = await this.pool.issue({
      csr, spiffeId, notBefore: new Date(now - BACKDATE_MS), notAfter: wanted, issuer: { id: issuer.id, certDer: issuer.certDer, key: issuer.keyObject },
    });
    const certificate = toPem(der);
    const serialNumber = formatSerial(serial);
    await this.records.add({ serial_number: serialNumber, spiffe_id: spiffeId, certificate, issuer_id: issuer.id, not_after: notAfter.toISOString() });
    return {
      spiffe_id: spiffeId,
      certificate,
      ca_chain: issuer.chainPem,
      bundle: this.ca.bundlePem(),
      serial_number: serialNumber,
      expiration: Math.floor(notAfter.getTime() / 1000),
    };
  }

  /**
   * Authenticates a client by the X.509-SVID it presented over mutual TLS: issued by one of this trust domain's
   * live intermediates, within its validity, not revoked (by serial or SPIFFE ID). The TLS handshake already
   * proved the client holds the key.
   */
  async authenticatePeer(req: Request): Promise<Caller | null> {
    const cert = req.client.peerCertificate?.() ?? null;
    if (!cert) return null;
    let peer = this.verifiedPeers.get(cert);
    if (!peer) {
      const issuer = this.ca.issuerOf(cert);
      if (!issuer) return this.refusePeer(req, null, 'the client certificate was not issued by this trust domain’s CA');
      const spiffeId = svidId(cert);
      if (!spiffeId || parseSpiffeId(spiffeId).trustDomain !== this.ca.trustDomain) return this.refusePeer(req, null, 'the client certificate carries no SPIFFE ID of this trust domain');
      peer = { spiffeId, serial: cert.serialNumber, notAfter: Date.parse(cert.validTo) };
      if (Date.parse(cert.validFrom) > Date.now()) return this.refusePeer(req, spiffeId, 'the client certificate is not valid yet');
      this.verifiedPeers.set(cert, peer);
    }
    if (peer.notAfter <= Date.now()) return this.refusePeer(req, peer.spiffeId, 'the client certificate has expired');
    if (this.revocations.isSerialRevoked(peer.serial)) return this.refusePeer(req, peer.spiffeId, `the client certificate (serial ${formatSerial(Buffer.from(peer.serial, 'hex'))}) is revoked`);
    if (this.revocations.isIdRevoked(peer.spiffeId)) return this.refusePeer(req, peer.spiffeId, `${peer.spiffeId} is revoked`);
    return {
      tokenHash: `svid:${peer.serial}`, accessor: `svid:${peer.spiffeId}`, policies: ['workload'], displayName: `svid:${peer.spiffeId}`,
      meta: workloadMeta(peer.spiffeId), orphan: true, token: '', expireTime: peer.notAfter, entityId: peer.spiffeId,
    };
  }

  private async refusePeer(req: Request, spiffeId: string | null, reason: string): Promise<never> {
    await this.event({ type: 'attest.svid', outcome: 'failure', subject: spiffeId ?? undefined, client_ip: req.client.address, reason });
    throw new PermissionDeniedError(`permission denied: ${reason}`);
  }

  // ── Attestation ──────────────────────────────────────────────────────────────────────────────

  /**
   * The SPIFFE ID a join token is bound to, spending the token. `check` vets the rest of the request first (it
   * throws to refuse); a revoked identity is refused after the token is spent (a token for it is not kept for later).
   */
  async attestJoinToken(token: string, expect: { namespace?: string; service?: string }, check?: (spiffeId: string) => void): Promise<string> {
    const spiffeId = await this.joinTokens.consume(token, (id) => {
      const want = expect.service || expect.namespace ? this.workloadId(expect.namespace ?? 'default', expect.service ?? parseServiceOf(id)) : null;
      if (want && want !== id) return `it is bound to ${id}, not ${want}`;
      check?.(id);
      return null;
    });
    this.refuseRevoked(spiffeId);
    return spiffeId;
  }

  async attestJwt(attestorName: string, jwt: string): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
    const attestor = await this.attestor(attestorName);
    const r = await attestor.attest(jwt);
    const spiffeId = this.workloadId(r.namespace, r.service);
    this.refuseRevoked(spiffeId);
    return { spiffeId, claims: r.claims };
  }

  /** A revoked identity gets nothing: no SVID, and no workload token from attestation either. */
  private refuseRevoked(spiffeId: string): void {
    const revoked = this.revocations.isIdRevoked(spiffeId);
    if (revoked) throw new PermissionDeniedError(`permission denied: ${spiffeId} was revoked at ${revoked.revoked_at}; nothing is issued for it until it is restored (identity/restore)`);
  }

  async writeAttestor(name: string, raw: Record<string, unknown>): Promise<JwtIssuerConfig> {
    const cfg = validateIssuerConfig({ ...raw, name });
    await this.d.store.put(ATTESTORS + name, cfg);
    this.attestors.delete(name);
    return cfg;
  }

  async readAttestor(name: string): Promise<JwtIssuerConfig> {
    const got = await this.d.store.get(ATTESTORS + name);
    if (!got) throw new NotFoundError(`no JWT attestor named "${name}"; configure one at identity/attestors/jwt/${name}`);
    return JSON.parse(got.value.toString('utf8')) as JwtIssuerConfig;
  }

  async deleteAttestor(name: string): Promise<void> {
    if ((await this.d.store.delete(ATTESTORS + name)) === null) throw new NotFoundError(`no JWT attestor named "${name}"`);
    this.attestors.delete(name);
  }

  listAttestors(): Promise<string[]> {
    return this.d.store.list(ATTESTORS);
  }

  private async attestor(name: string): Promise<JwtAttestor> {
    let a = this.attestors.get(name);
    if (!a) {
      a = new JwtAttestor(await this.readAttestor(name));
      this.attestors.set(name, a);
    }
    return a;
  }

  /** Records a security event; failures to record are logged, never hide the outcome. */
  async event(e: SecurityEvent): Promise<void> {
    try {
      await this.events.record(e);
    } catch (err) {
      this.d.logger.error({ err: (err as Error).message, type: e.type }, 'recording a security event failed');
    }
  }

  // ── JWT-SVIDs ────────────────────────────────────────────────────────────────────────────────

  async issueJwtSvid(spiffeId: string, audience: string[], ttlSeconds: number | undefined): Promise<{ token: string; expiresAt: Date }> {
    const revoked = this.revocations.isIdRevoked(spiffeId);
    if (revoked) throw new PermissionDeniedError(`permission denied: ${spiffeId} was revoked at ${revoked.revoked_at}`);
    if (audience.length === 0) throw new BadRequestError('audience is required: who the JWT-SVID is for');
    const ttl = checkTtl(ttlSeconds, JWT_SVID_TTL, 'ttl');
    return signJwtSvid(this.ca.jwtSigningKey(), { spiffeId, audience, ttlSeconds: ttl, issuer: this.issuerUrl ?? undefined });
  }

  async validateJwtSvid(token: string, audience: string): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
    const r = await validateJwtSvid(token, { audience, keys: this.ca.jwtPublicKeys(), trustDomain: this.ca.trustDomain });
    if (this.revocations.isIdRevoked(r.spiffeId)) throw new BadRequestError(`JWT-SVID refused: ${r.spiffeId} is revoked`);
    return r;
  }

  // ── Bundles, CRLs, discovery ─────────────────────────────────────────────────────────────────

  /**
   * JWT-SVID keys for OIDC consumers (the discovery document's jwks_uri): `use: sig` and `alg`, as RFC 7517 and OIDC
   * libraries expect; they skip keys whose `use` is the SPIFFE bundle's `jwt-svid`.
   */
  jwks(): { keys: Record<string, unknown>[] } {
    return { keys: this.jwtSvidKeys().map((k) => ({ ...k, use: 'sig', alg: 'ES256' })) };
  }

  /** The same keys as the SPIFFE bundle carries them (`use: jwt-svid`). */
  jwtSvidKeys(): Record<string, unknown>[] {
    return (jwtBundle(this.ca.jwtPublicKeys()) as { keys: Record<string, unknown>[] }).keys;
  }

  /** The SPIFFE bundle (Trust Domain and Bundle §4): X.509 roots as `x509-svid` keys, JWT keys as `jwt-svid`. */
  spiffeBundle(): Record<string, unknown> {
    const x509Keys = this.ca.bundle().map((r) => ({
      ...r.nodeCert.publicKey.export({ format: 'jwk' }), use: 'x509-svid', x5c: [r.certDer.toString('base64')],
    }));
    return { keys: [...x509Keys, ...this.jwtSvidKeys()], spiffe_sequence: this.ca.sequence, spiffe_refresh_hint: 300 };
  }

  openidConfiguration(): Record<string, unknown> {
    if (!this.issuerUrl) throw new NotFoundError('OIDC discovery is not available: the server does not know its public address');
    return {
      issuer: this.issuerUrl,
      jwks_uri: `${this.issuerUrl}/v1/identity/jwks`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
    };
  }

  /**
   * DER CRLs (a CRL speaks for the CA that issued the certificates): one per live intermediate, active first, for
   * the leaves; then one per live root, for the intermediates and cross-signed roots it issued (none is ever
   * revoked, so those are empty). Verifiers that check every certificate of a chain need all of them: OpenSSL's
   * CRL_CHECK_ALL, which Node turns on when given a `crl`, refuses every chain whose intermediate has no CRL.
   */
  async crlsDer(): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (const issuer of this.ca.liveIssuers().reverse()) out.push(await this.crlFor(issuer, true));
    for (const root of this.ca.bundle()) out.push(await this.crlFor(root, false));
    return out;
  }

  private async crlFor(ca: LoadedCa, listsLeaves: boolean): Promise<Buffer> {
    const index = this.revocations.currentIndex;
    // Keyed by the CA certificate's serial: intermediate and root ids are separate sequences.
    const key = ca.cert.serialNumber;
    const cached = this.crls.get(key);
    // Remade when the list changed, and well before nextUpdate (24 h).
    if (cached && cached.index === index && Date.now() - cached.madeAt < 12 * 3600_000) return cached.der;
    const entries = listsLeaves ? this.revocations.liveSerials().map((s) => ({ serial: serialKey(s.serial_number), revokedAt: new Date(s.revoked_at) })) : [];
    const der = await createCrl(ca, entries, Math.max(1, index), new Date(Date.now() + 24 * 3600_000));
    this.crls.set(key, { der, index, madeAt: Date.now() });
    return der;
  }

  // ── Revocation ───────────────────────────────────────────────────────────────────────────────

  async revokeSerial(serial: string): Promise<{ serial_number: string; spiffe_id: string | null; revocation_time: number }> {
    const hex = serialKey(serial);
    if (!/^[0-9a-f]{2,40}$/.test(hex)) throw new BadRequestError(`serial_number "${serial}": expected hex, e.g. 3a:0f:… as issued`);
    const rec = await this.records.get(hex);
    if (!rec) throw new NotFoundError(`no certificate with serial ${serial} was issued here`);
    const now = new Date();
    await this.revocations.revokeSerial({ serial_number: rec.serial_number, spiffe_id: rec.spiffe_id ?? '', revoked_at: now.toISOString(), expires_at: rec.not_after });
    await this.records.markRevoked(hex, now.toISOString());
    await this.event({ type: 'identity.revoke', outcome: 'success', subject: rec.spiffe_id ?? rec.serial_number, details: { serial_number: rec.serial_number } });
    return { serial_number: rec.serial_number, spiffe_id: rec.spiffe_id, revocation_time: Math.floor(now.getTime() / 1000) };
  }

  /** Revokes a SPIFFE ID: no new SVID for it, every certificate it holds listed in the CRL and refused by peers. */
  async revokeId(spiffeId: string): Promise<{ spiffe_id: string; serials: number }> {
    const id = parseSpiffeId(spiffeId);
    if (id.trustDomain !== this.ca.trustDomain) throw new BadRequestError(`${spiffeId} is not in this trust domain (${this.ca.trustDomain})`);
    await this.revocations.revokeId(id.uri);
    let count = 0;
    const now = new Date().toISOString();
    for (const hex of await this.records.serialsOf(id.uri)) {
      const rec = await this.records.get(hex);
      if (!rec || Date.parse(rec.not_after) <= Date.now() || rec.revoked_at) continue;
      await this.revocations.revokeSerial({ serial_number: rec.serial_number, spiffe_id: id.uri, revoked_at: now, expires_at: rec.not_after });
      await this.records.markRevoked(hex, now);
      count += 1;
    }
    await this.event({ type: 'identity.revoke', outcome: 'success', subject: id.uri, details: { certificates: count } });
    return { spiffe_id: id.uri, serials: count };
  }
}

function checkTtl(value: number | undefined, range: { default: number; min: number; max: number }, name: string): number {
  if (value === undefined || value === 0) return range.default;
  if (value < range.min || value > range.max) throw new BadRequestError(`${name} ${value}s is out of range: allowed ${range.min}s … ${range.max}s`);
  return value;
}

/** The SPIFFE ID of an X.509-SVID: its one URI SAN. */
export function svidId(cert: X509Certificate): string | null {
  const san = cert.subjectAltName;
  if (!san) return null;
  const uris = san.split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
  return uris.length === 1 && uris[0]!.startsWith('spiffe://') ? uris[0]! : null;
}

/**
 * The tags a workload caller carries (Cedar `principal.getTag`): its namespace, service and sidecar service name,
 * taken from the verified SPIFFE ID, so the workload policy can confine a proxy to its own catalog entry and mesh
 * config. Empty for SPIFFE IDs of another shape.
 */
export function workloadMeta(spiffeId: string): Record<string, string> {
  const w = workloadOf(spiffeId);
  return w ? { namespace: w.namespace, service: w.service, sidecar: `${w.service}${SIDECAR_SUFFIX}` } : {};
}

function parseServiceOf(spiffeId: string): string {
  return spiffeId.split('/').pop() ?? '';
}

import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { ApiClient, CliError, describeError } from '../../cli/client.js';
import type { Logger } from '../../telemetry/index.js';
import { makeKeyAndCsr } from '../csr-make.js';
import { fromPem } from '../pem.js';
import type { SvidResult } from '../service.js';
import { writeSvidFiles } from './svid-files.js';
import { startWorkloadApi, type WorkloadApi, type WorkloadSource, type WorkloadState } from './workload-api.js';

// `aegis agent`: attests once (join token or JWT), then keeps an X.509-SVID current for the workloads on this host
// and serves it over the SPIFFE Workload API. Keys are made here and never sent anywhere (only CSRs are). Renewal
// at half life is authenticated by the current SVID over mutual TLS; while the server is unreachable the agent
// keeps serving what it has and retries with backoff until the certificate expires.

export interface AgentOptions {
  address: string;
  caFile?: string;
  attestation: { joinToken: string; namespace?: string; service?: string } | { jwtFile: string; attestor: string };
  socketPath: string;
  writeDir?: string;
  ttlSeconds?: number;
  keyType?: 'p256' | 'p384';
  logger: Logger;
  /** How long to wait on the revocation watch (s). */
  watchWaitSeconds?: number;
}

interface Held {
  state: WorkloadState;
  keyPem: string;
  certChainPem: string;
  issuedAt: number;
  serial: string;
}

export class Agent implements WorkloadSource {
  private held: Held | null = null;
  private readonly events = new EventEmitter();
  private readonly client: ApiClient;
  private api: WorkloadApi | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private watchIndex = 0;
  private watchAbort: (() => void) | null = null;

  constructor(private readonly o: AgentOptions) {
    if (!o.address.startsWith('https://')) {
      throw new CliError(`the agent needs an HTTPS server (renewal is authenticated by the SVID over mutual TLS); ${o.address} is not`, 2);
    }
    this.client = new ApiClient({
      address: o.address, caCert: o.caFile ?? null, token: null,
      clientCert: () => (this.held ? { cert: this.held.certChainPem, key: this.held.keyPem } : null),
    });
  }

  /** Attests, serves the Workload API, and keeps the SVID renewed. */
  async start(): Promise<void> {
    const svid = await this.attest();
    await this.install(svid.result, svid.keyPem);
    this.api = await startWorkloadApi({ socketPath: this.o.socketPath, source: this, logger: this.o.logger });
    this.o.logger.info({ spiffeId: svid.result.spiffe_id, socket: this.o.socketPath, expires: new Date(svid.result.expiration * 1000).toISOString() }, 'agent attested; Workload API serving');
    void this.watchRevocations();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.watchAbort?.();
    await this.api?.close();
    this.events.removeAllListeners();
  }

  get spiffeId(): string | null {
    return this.held?.state.svid.spiffeId ?? null;
  }

  current(): WorkloadState | null {
    return this.held?.state ?? null;
  }

  onUpdate(listener: (s: WorkloadState) => void): () => void {
    this.events.on('update', listener);
    return () => this.events.off('update', listener);
  }

  async fetchJwtSvid(audience: string[]): Promise<{ spiffeId: string; token: string }> {
    const res = await this.client.ok('POST', 'identity/jwt-svid', { body: { audience }, auth: false });
    const d = (res.body as { data: { spiffe_id: string; token: string } }).data;
    return { spiffeId: d.spiffe_id, token: d.token };
  }

  async validateJwtSvid(token: string, audience: string): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
    const res = await this.client.ok('POST', 'identity/jwt-svid/validate', { body: { token, audience }, auth: false });
    const d = (res.body as { data: { spiffe_id: string; claims: Record<string, unknown> } }).data;
    return { spiffeId: d.spiffe_id, claims: d.claims };
  }

  /** Renews now (normally called by the half-life timer). */
  async renew(): Promise<void> {
    const { keyPem, csrPem } = await this.keyAndCsr();
    const res = await this.client.call('POST', 'identity/svid', { body: { csr: csrPem, ...this.ttl() }, auth: false });
    if (res.status !== 200) throw new CliError(describeError(res, 'POST', 'identity/svid'));
    await this.install((res.body as { data: SvidResult }).data, keyPem);
    this.o.logger.info({ spiffeId: this.spiffeId, serial: this.held!.serial }, 'SVID renewed');
  }

  private ttl(): { ttl?: number } {
    return this.o.ttlSeconds ? { ttl: this.o.ttlSeconds } : {};
  }

  private async keyAndCsr() {
    return makeKeyAndCsr(this.o.keyType ?? 'p256');
  }

  private async attest(): Promise<{ result: SvidResult; keyPem: string }> {
    const { keyPem, csrPem } = await this.keyAndCsr();
    const a = this.o.attestation;
    let res;
    if ('joinToken' in a) {
      res = await this.client.ok('POST', 'identity/attest/join-token', {
        body: { join_token: a.joinToken, csr: csrPem, namespace: a.namespace, service: a.service, ...this.ttl() }, auth: false,
      });
    } else {
      let jwt: string;
      try {
        jwt = (await readFile(a.jwtFile, 'utf8')).trim();
      } catch (err) {
        throw new CliError(`cannot read the JWT file ${a.jwtFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 2);
      }
      res = await this.client.ok('POST', 'identity/attest/jwt', { body: { attestor: a.attestor, jwt, csr: csrPem, ...this.ttl() }, auth: false });
    }
    return { result: (res.body as { data: SvidResult }).data, keyPem };
  }

  private async install(r: SvidResult, keyPem: string): Promise<void> {
    const chainPem = [r.certificate, ...r.ca_chain].map((p) => p.trim()).join('\n') + '\n';
    const crl = await this.fetchCrls();
    // The SPIFFE bundle's JWT keys (`use: jwt-svid`), which the Workload API serves as the JWT bundle.
    const spiffe = await this.client.ok('GET', 'identity/bundle/spiffe', { auth: false });
    const jwtKeys = ((JSON.parse(spiffe.text) as { keys: { use?: string }[] }).keys).filter((k) => k.use === 'jwt-svid');
    const state: WorkloadState = {
      trustDomain: new URL(r.spiffe_id).host,
      svid: { spiffeId: r.spiffe_id, chain: fromPem(chainPem), key: fromPem(keyPem)[0]!, expiresAt: new Date(r.expiration * 1000) },
      bundle: fromPem(r.bundle),
      crl,
      jwtBundle: Buffer.from(JSON.stringify({ keys: jwtKeys })),
    };
    this.held = { state, keyPem, certChainPem: chainPem, issuedAt: Date.now(), serial: r.serial_number };
    if (this.o.writeDir) await writeSvidFiles(this.o.writeDir, state);
    this.events.emit('update', state);
    this.scheduleRenewal();
  }

  private async fetchCrls(): Promise<Buffer[]> {
    const res = await this.client.call('GET', 'identity/crl/pem', { auth: false });
    return res.status === 200 ? fromPem(res.text) : [];
  }

  /** Renews at half the remaining life; on failure retries with backoff while the SVID is still valid. */
  private scheduleRenewal(delayMs?: number): void {
    if (this.stopped || !this.held) return;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    const { issuedAt } = this.held;
    const expires = this.held.state.svid.expiresAt.getTime();
    const wait = delayMs ?? Math.max(1000, (expires - issuedAt) / 2 - (Date.now() - issuedAt));
    this.renewTimer = setTimeout(() => {
      this.renew().catch((err) => {
        const left = expires - Date.now();
        const retry = Math.max(1000, Math.min(30_000, left / 10));
        this.o.logger.warn({ err: (err as Error).message, retryInMs: retry, expiresInMs: left }, 'SVID renewal failed; keeping the current one');
        if (left > 0) this.scheduleRenewal(retry);
      });
    }, wait);
    this.renewTimer.unref();
  }

  /**
   * Follows the revocation list with blocking queries: on a change, the CRLs (and the trust bundle, which a root
   * rotation changes) are fetched again and pushed to the open Workload API streams.
   */
  private async watchRevocations(): Promise<void> {
    let backoff = 1000;
    while (!this.stopped) {
      try {
        const wait = this.o.watchWaitSeconds ?? 30;
        const res = await this.client.call('GET', 'identity/revocations', { query: { index: String(this.watchIndex), wait: `${wait}s` }, auth: false });
        if (res.status !== 200) throw new Error(describeError(res, 'GET', 'identity/revocations'));
        const index = Number((res.body as { data: { index: number } }).data.index);
        if (index !== this.watchIndex && this.held) {
          this.watchIndex = index;
          const bundle = await this.client.ok('GET', 'identity/bundle', { auth: false });
          this.held.state = { ...this.held.state, crl: await this.fetchCrls(), bundle: fromPem(bundle.text) };
          if (this.o.writeDir) await writeSvidFiles(this.o.writeDir, this.held.state);
          this.events.emit('update', this.held.state);
        }
        backoff = 1000;
      } catch (err) {
        if (this.stopped) return;
        this.o.logger.warn({ err: (err as Error).message, retryInMs: backoff }, 'revocation watch failed; retrying');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, backoff);
          this.watchAbort = () => { clearTimeout(t); resolve(); };
        });
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }
}


import { EventEmitter } from 'node:events';
import type { ApiClient } from '../../cli/client.js';
import { describeError } from '../../cli/client.js';
import type { Logger } from '../../telemetry/index.js';
import { fromPem } from '../pem.js';
import { SvidKeeper, type Attestation, type HeldSvid } from './svid-keeper.js';
import { writeSvidFiles } from './svid-files.js';
import { startWorkloadApi, type WorkloadApi, type WorkloadSource, type WorkloadState } from './workload-api.js';

// `aegis agent`: attests once (join token or JWT), then keeps an X.509-SVID current for the workloads on this host
// and serves it over the SPIFFE Workload API. Keys are made here and never sent anywhere (only CSRs are). Renewal
// at half life is authenticated by the current SVID over mutual TLS (SvidKeeper); while the server is unreachable
// the agent keeps serving what it has and retries with backoff until the certificate expires.

export interface AgentOptions {
  address: string;
  caFile?: string;
  attestation: Attestation;
  socketPath: string;
  writeDir?: string;
  ttlSeconds?: number;
  keyType?: 'p256' | 'p384';
  logger: Logger;
  /** How long to wait on the revocation watch (s). */
  watchWaitSeconds?: number;
}

export class Agent implements WorkloadSource {
  private state: WorkloadState | null = null;
  private readonly events = new EventEmitter();
  private readonly keeper: SvidKeeper;
  private readonly client: ApiClient;
  private api: WorkloadApi | null = null;
  private stopped = false;
  private watchIndex = 0;
  private watchAbort: (() => void) | null = null;

  constructor(private readonly o: AgentOptions) {
    this.keeper = new SvidKeeper({
      who: 'the agent', address: o.address, caFile: o.caFile, attestation: o.attestation, ttlSeconds: o.ttlSeconds, keyType: o.keyType, logger: o.logger,
      onSvid: (svid) => this.install(svid),
    });
    this.client = this.keeper.client;
  }

  /** Attests, serves the Workload API, and keeps the SVID renewed. */
  async start(): Promise<void> {
    const svid = await this.keeper.attest();
    this.api = await startWorkloadApi({ socketPath: this.o.socketPath, source: this, logger: this.o.logger });
    this.o.logger.info({ spiffeId: svid.spiffeId, socket: this.o.socketPath, expires: new Date(svid.expiresAt).toISOString() }, 'agent attested; Workload API serving');
    void this.watchRevocations();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.keeper.stop();
    this.watchAbort?.();
    await this.api?.close();
    this.events.removeAllListeners();
  }

  get spiffeId(): string | null {
    return this.state?.svid.spiffeId ?? null;
  }

  current(): WorkloadState | null {
    return this.state;
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
    await this.keeper.renew();
  }

  /** The Workload API view of a new SVID: CRLs and JWT keys fetched with it; files written; open streams pushed. */
  private async install(svid: HeldSvid): Promise<void> {
    const crl = await this.fetchCrls();
    // The SPIFFE bundle's JWT keys (`use: jwt-svid`), which the Workload API serves as the JWT bundle.
    const spiffe = await this.client.ok('GET', 'identity/bundle/spiffe', { auth: false });
    const jwtKeys = ((JSON.parse(spiffe.text) as { keys: { use?: string }[] }).keys).filter((k) => k.use === 'jwt-svid');
    const state: WorkloadState = {
      trustDomain: new URL(svid.spiffeId).host,
      svid: { spiffeId: svid.spiffeId, chain: fromPem(svid.certChainPem), key: fromPem(svid.keyPem)[0]!, expiresAt: new Date(svid.expiresAt) },
      bundle: fromPem(svid.bundlePem),
      crl,
      jwtBundle: Buffer.from(JSON.stringify({ keys: jwtKeys })),
    };
    this.state = state;
    if (this.o.writeDir) await writeSvidFiles(this.o.writeDir, state);
    this.events.emit('update', state);
  }

  private async fetchCrls(): Promise<Buffer[]> {
    const res = await this.client.call('GET', 'identity/crl/pem', { auth: false });
    return res.status === 200 ? fromPem(res.text) : [];
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
        if (index !== this.watchIndex && this.state) {
          this.watchIndex = index;
          const bundle = await this.client.ok('GET', 'identity/bundle', { auth: false });
          this.state = { ...this.state, crl: await this.fetchCrls(), bundle: fromPem(bundle.text) };
          if (this.o.writeDir) await writeSvidFiles(this.o.writeDir, this.state);
          this.events.emit('update', this.state);
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


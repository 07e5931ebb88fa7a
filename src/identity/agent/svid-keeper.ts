import { readFile } from 'node:fs/promises';
import { ApiClient, CliError, describeError } from '../../cli/client.js';
import type { Logger } from '../../telemetry/index.js';
import { makeKeyAndCsr } from '../csr-make.js';
import type { SvidResult } from '../service.js';

// Holds one workload's X.509-SVID: attests once (join token or JWT), makes every key locally (only CSRs leave),
// renews at half life over mutual TLS with the current SVID, and retries a failed renewal with backoff while the
// current certificate is still valid. Shared by `aegis agent` and `aegis proxy`.

export type Attestation = { joinToken: string; namespace?: string; service?: string } | { jwtFile: string; attestor: string };

export interface HeldSvid {
  spiffeId: string;
  keyPem: string;
  /** Leaf then intermediates, PEM. */
  certChainPem: string;
  /** The trust bundle that came with the SVID (roots, PEM). */
  bundlePem: string;
  serial: string;
  /** Epoch ms. */
  issuedAt: number;
  expiresAt: number;
  result: SvidResult;
}

export interface SvidKeeperOptions {
  /** Must be https:// (renewal is authenticated by the SVID over mutual TLS). */
  address: string;
  /** Who needs the server, for the error message: "the agent", "the proxy". */
  who?: string;
  caFile?: string;
  attestation: Attestation;
  ttlSeconds?: number;
  keyType?: 'p256' | 'p384';
  logger: Logger;
  /**
   * Runs before a new SVID is adopted (first attestation and every renewal); a throw rejects it, and a renewal
   * is then retried as if it had failed.
   */
  onSvid?: (svid: HeldSvid) => Promise<void> | void;
}

export class SvidKeeper {
  /** Unauthenticated by token; presents the current SVID over mutual TLS once there is one. */
  readonly client: ApiClient;
  private held: HeldSvid | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: SvidKeeperOptions) {
    if (!o.address.startsWith('https://')) {
      throw new CliError(`${o.who ?? 'the SVID keeper'} needs an HTTPS server (renewal is authenticated by the SVID over mutual TLS); ${o.address} is not`, 2);
    }
    this.client = new ApiClient({
      address: o.address, caCert: o.caFile ?? null, token: null,
      clientCert: () => (this.held ? { cert: this.held.certChainPem, key: this.held.keyPem } : null),
    });
  }

  current(): HeldSvid | null {
    return this.held;
  }

  /** Attests once and starts the renewal timer. */
  async attest(): Promise<HeldSvid> {
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
    return this.adopt((res.body as { data: SvidResult }).data, keyPem);
  }

  /** Renews now (normally called by the half-life timer). */
  async renew(): Promise<HeldSvid> {
    const { keyPem, csrPem } = await this.keyAndCsr();
    const res = await this.client.call('POST', 'identity/svid', { body: { csr: csrPem, ...this.ttl() }, auth: false });
    if (res.status !== 200) throw new CliError(describeError(res, 'POST', 'identity/svid'));
    const held = await this.adopt((res.body as { data: SvidResult }).data, keyPem);
    this.o.logger.info({ spiffeId: held.spiffeId, serial: held.serial }, 'SVID renewed');
    return held;
  }

  stop(): void {
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
  }

  private ttl(): { ttl?: number } {
    return this.o.ttlSeconds ? { ttl: this.o.ttlSeconds } : {};
  }

  private keyAndCsr() {
    return makeKeyAndCsr(this.o.keyType ?? 'p256');
  }

  private async adopt(r: SvidResult, keyPem: string): Promise<HeldSvid> {
    const held: HeldSvid = {
      spiffeId: r.spiffe_id, keyPem, certChainPem: [r.certificate, ...r.ca_chain].map((p) => p.trim()).join('\n') + '\n',
      bundlePem: r.bundle, serial: r.serial_number, issuedAt: Date.now(), expiresAt: r.expiration * 1000, result: r,
    };
    await this.o.onSvid?.(held);
    this.held = held;
    this.scheduleRenewal();
    return held;
  }

  /** Renews at half the remaining life; on failure retries with backoff while the SVID is still valid. */
  private scheduleRenewal(delayMs?: number): void {
    if (this.stopped || !this.held) return;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    const { issuedAt, expiresAt } = this.held;
    const wait = delayMs ?? Math.max(1000, (expiresAt - issuedAt) / 2 - (Date.now() - issuedAt));
    this.renewTimer = setTimeout(() => {
      this.renew().catch((err) => {
        const left = expiresAt - Date.now();
        const retry = Math.max(1000, Math.min(30_000, left / 10));
        this.o.logger.warn({ err: (err as Error).message, retryInMs: retry, expiresInMs: left }, 'SVID renewal failed; keeping the current one');
        if (left > 0) this.scheduleRenewal(retry);
      });
    }, wait);
    this.renewTimer.unref();
  }
}

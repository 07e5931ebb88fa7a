import { AuditBroker } from '../audit/index.js';
import { Catalog, HealthChecker, connectChecker, createCatalogBackends } from '../catalog/index.js';
import { TokenStore, createTokenBackend } from '../auth/index.js';
import { PolicyEngine, PolicyStore } from '../policy/index.js';
import { SecurityEvents } from '../detect/index.js';
import { MeshService } from '../mesh/index.js';
import { createIdentityBackend, createPkiBackend, IdentityService } from '../identity/index.js';
import { createDatabaseBackend, createKvBackend, createTransitBackend } from '../secrets/index.js';
import { createSysBackend } from '../sys/index.js';
import type { Logger } from '../telemetry/index.js';
import { Metrics } from '../telemetry/index.js';
import { Barrier } from './barrier/index.js';
import { BadRequestError } from './errors.js';
import { LeaseManager } from './leases/index.js';
import { ResponseWrapper } from './wrapping/index.js';
import { MountTable } from './mounts.js';
import { Pipeline, type PipelineResult } from './pipeline.js';
import type { Request } from './request.js';
import { Router } from './router.js';
import { SealManager, type AutoUnseal, type SealStatus } from './seal/index.js';
import type { Storage } from './storage/index.js';

export interface CoreConfig {
  storage: Storage;
  logger: Logger;
  autoUnseal?: AutoUnseal | null;
  /** Token TTL when none is asked for (seconds). Vault's default: 768h. */
  defaultTtl?: number;
  /** Longest TTL any token may have (seconds). */
  maxTtl?: number;
  /** How often expired tokens are swept (ms). */
  sweepIntervalMs?: number;
  /** Trust domain of the workload CA made at init (default `aegis.local`). */
  trustDomain?: string;
  /** Worker threads for SVID issuance (0, the default here, issues on the main thread). */
  issueWorkers?: number;
  /** First retry after a failed lease revocation (ms); doubles per attempt up to 10 minutes. */
  leaseRetryBaseMs?: number;
}

export interface InitOptions {
  rootTokenId?: string;
  trustDomain?: string;
  caKeyType?: 'p256' | 'p384';
}

export interface InitResult {
  keys: Buffer[];
  rootToken: string;
}

/**
 * One Aegis server's kernel: storage → barrier → seal, the router with its mounts, tokens, policies, audit and
 * the pipeline. Built from its dependencies so tests make a real one in a temp dir in one line.
 */
export class Core {
  readonly storage: Storage;
  readonly barrier: Barrier;
  readonly seal: SealManager;
  readonly router = new Router();
  readonly mounts: MountTable;
  readonly tokens: TokenStore;
  readonly engine = new PolicyEngine();
  readonly policies: PolicyStore;
  readonly audit: AuditBroker;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly pipeline: Pipeline;
  readonly events: SecurityEvents;
  readonly identity: IdentityService;
  readonly leases: LeaseManager;
  readonly wrapper: ResponseWrapper;
  readonly catalog: Catalog;
  readonly checker: HealthChecker;
  readonly mesh: MeshService;
  readonly defaultTtl: number;
  readonly maxTtl: number;
  private sweeper: NodeJS.Timeout | null = null;
  private readonly sweepIntervalMs: number;
  private readonly autoUnseal: AutoUnseal | null;

  constructor(cfg: CoreConfig) {
    this.storage = cfg.storage;
    this.logger = cfg.logger;
    this.autoUnseal = cfg.autoUnseal ?? null;
    this.defaultTtl = cfg.defaultTtl ?? 768 * 3600;
    this.maxTtl = cfg.maxTtl ?? 768 * 3600;
    this.sweepIntervalMs = cfg.sweepIntervalMs ?? 60_000;
    this.barrier = new Barrier(this.storage);
    this.seal = new SealManager(this.storage, this.barrier, this.autoUnseal);
    this.mounts = new MountTable(this.barrier, this.router);
    const onStorageChange = (onChange: (key: string) => void) => this.storage.subscribe((cs) => cs.forEach((c) => onChange(c.key)));
    this.tokens = new TokenStore(this.barrier, onStorageChange);
    this.policies = new PolicyStore(this.barrier, this.engine, onStorageChange);
    this.events = new SecurityEvents(this.barrier.view('detect/'));
    this.metrics = new Metrics({
      sealed: () => this.barrier.sealed,
      tokens: () => (this.barrier.sealed ? 0 : this.tokens.tokenCount),
      leases: () => ({ live: this.leases.count, failing: this.leases.failingCount }),
    });
    this.leases = new LeaseManager({
      barrier: this.barrier, router: this.router, logger: this.logger, defaultTtl: this.defaultTtl, maxTtl: this.maxTtl,
      retryBaseMs: cfg.leaseRetryBaseMs, onRevokeFailure: () => this.metrics.leaseRevokeFailures.inc(),
    });
    // Revoking a token revokes the secrets leased to it (Vault's model); a failed revocation is retried, not fatal.
    this.tokens.onRevoke((hash) => this.leases.revokeByToken(hash).then(() => undefined));
    this.wrapper = new ResponseWrapper(this.barrier, this.tokens, this.events);
    this.tokens.onRevoke((hash) => this.wrapper.dropFor(hash));
    // Unmounting an engine first revokes everything it leased.
    this.mounts.beforeDisable = async (entry) => {
      const r = await this.leases.revokePrefix(entry.path);
      if (r.failed.length > 0) throw new BadRequestError(`cannot disable ${entry.path}: ${r.failed.length} of its leases could not be revoked (first: ${r.failed[0]}); fix the engine or run sys/leases/revoke-force/${entry.path}`);
    };
    this.audit = new AuditBroker(this.barrier, this.logger, (device) => this.metrics.auditFailures.inc({ device }));
    this.identity = new IdentityService({
      store: this.barrier.view('identity/'), storage: this.storage, events: this.events, logger: this.logger, trustDomain: cfg.trustDomain ?? 'aegis.local',
      issueWorkers: cfg.issueWorkers ?? 0,
    });
    this.pipeline = new Pipeline({
      router: this.router, tokens: this.tokens, engine: this.engine, audit: this.audit, metrics: this.metrics,
      isSealed: () => this.barrier.sealed,
      leases: this.leases,
      wrapper: this.wrapper,
      peerAuth: (req) => (this.identity.ca.ready ? this.identity.authenticatePeer(req) : Promise.resolve(null)),
    });
    this.mounts.register('kv', createKvBackend);
    this.mounts.register('transit', createTransitBackend);
    this.mounts.register('database', (ctx) => createDatabaseBackend(ctx, { defaultTtl: this.defaultTtl, maxTtl: this.maxTtl }));
    this.mounts.register('pki', (ctx) => createPkiBackend(ctx, this.identity, { defaultTtl: this.defaultTtl, maxTtl: this.maxTtl }));
    const builtin = { uuid: '', description: '', options: {}, builtin: true };
    this.router.add({ ...builtin, path: 'sys/', type: 'system', description: 'system endpoints' }, createSysBackend(this), this.barrier);
    this.router.add(
      { ...builtin, path: 'auth/token/', type: 'token', description: 'token based credentials' },
      createTokenBackend({ tokens: this.tokens, engine: this.engine, defaultTtl: this.defaultTtl, maxTtl: this.maxTtl }),
      this.barrier,
    );
    this.catalog = new Catalog(this.barrier.view('catalog/'), (l) => this.storage.subscribe(l));
    this.checker = new HealthChecker({ host: this.catalog, logger: this.logger });
    connectChecker(this.catalog, this.checker);
    const catalogBackends = createCatalogBackends(this.catalog, this.checker,
      (ctx, path) => ctx.caller !== null && this.engine.decide(ctx.caller, 'update', path, ctx.req.client.address).allowed);
    this.router.add({ ...builtin, path: 'catalog/', type: 'catalog', description: 'service catalog' }, catalogBackends.catalog, this.barrier.view('catalog/'));
    this.router.add({ ...builtin, path: 'health/', type: 'health', description: 'service health' }, catalogBackends.health, this.barrier.view('catalog/'));
    this.mesh = new MeshService({ store: this.barrier.view('mesh/'), subscribe: (l) => this.storage.subscribe(l), events: this.events });
    this.router.add({ ...builtin, path: 'mesh/', type: 'mesh', description: 'mesh control plane: intentions' }, { type: 'mesh', routes: this.mesh.routes() }, this.barrier.view('mesh/'));
    this.router.add({ ...builtin, path: 'identity/', type: 'identity', description: 'workload identity: CA, SVIDs, attestation' }, createIdentityBackend(this.identity, this.tokens), this.barrier.view('identity/'));
  }

  /** Reads the seal state and, when an auto-unseal key is configured, unseals. */
  async start(): Promise<void> {
    await this.seal.load();
    if (this.seal.initialized && this.autoUnseal && (await this.seal.autoUnseal())) await this.afterUnseal();
  }

  handle(req: Request): Promise<PipelineResult> {
    return this.pipeline.handle(req);
  }

  sealStatus(): SealStatus {
    return this.seal.status();
  }

  async initialize(shares: number, threshold: number, opts: InitOptions = {}): Promise<InitResult> {
    const rootTokenId = opts.rootTokenId;
    if (opts.trustDomain) this.identity.setInitialTrustDomain(opts.trustDomain, opts.caKeyType);
    const keys = await this.seal.initialize(shares, threshold);
    await this.afterUnseal();
    await this.mounts.enable('secret/', 'kv', 'key/value secret storage', { version: '2' });
    await this.mounts.enable('pki/', 'pki', 'Vault-compatible PKI over the trust domain CA');
    const root = await this.tokens.create({
      id: rootTokenId, policies: ['root'], parent: null, ttl: 0, explicitMaxTtl: 0, numUses: 0, renewable: false,
      displayName: 'root', path: 'auth/token/root',
    });
    this.logger.info({ shares, threshold, autoUnseal: this.autoUnseal?.type ?? null }, 'Aegis initialized');
    if (!this.autoUnseal) await this.sealNow();
    return { keys, rootToken: root.token };
  }

  /** Submits one unseal share; returns the seal status afterwards. */
  async submitUnsealKey(key: string): Promise<SealStatus> {
    if (await this.seal.submitShare(key)) await this.afterUnseal();
    return this.seal.status();
  }

  async sealNow(): Promise<void> {
    if (this.barrier.sealed) return;
    await this.beforeSeal();
    this.seal.seal();
    this.logger.info('Aegis sealed');
  }

  async stop(): Promise<void> {
    await this.sealNow();
    await this.storage.close();
  }

  private async afterUnseal(): Promise<void> {
    try {
      await this.tokens.setup();
      await this.policies.setup();
      await this.audit.setup();
      await this.identity.setup();
      await this.mounts.setup();
      await this.leases.setup();
      this.checker.start();
      await this.catalog.setup();
      await this.mesh.setup();
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'setup after unseal failed; sealing again');
      await this.beforeSeal();
      this.seal.seal();
      throw err;
    }
    this.sweeper = setInterval(() => {
      this.tokens.sweepExpired().catch((err) => this.logger.warn({ err: (err as Error).message }, 'token expiry sweep failed'));
      this.wrapper.sweep().catch((err) => this.logger.warn({ err: (err as Error).message }, 'wrapping sweep failed'));
    }, this.sweepIntervalMs);
    this.sweeper.unref();
    this.logger.info({ storage: this.storage.name, keyTerm: this.barrier.keyStatus().term }, 'Aegis unsealed');
  }

  private async beforeSeal(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    this.leases.teardown();
    this.checker.stop();
    this.catalog.teardown();
    this.mesh.teardown();
    await this.mounts.teardown();
    this.identity.teardown();
    this.audit.teardown();
    this.policies.teardown();
    this.tokens.teardown();
  }
}

import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { startDnsServer, type RunningDns } from '../catalog/index.js';
import { Core } from '../core/core.js';
import { KeyFileUnseal } from '../core/seal/index.js';
import { CachedStorage, SqliteStorage } from '../core/storage/index.js';
import { createLogger, type Logger } from '../telemetry/index.js';
import { parseAddress, type ServerConfig } from './config.js';
import { buildHttpApi } from './http-api.js';
import { serverTls } from './tls-bootstrap.js';

export interface RunningServer {
  core: Core;
  app: FastifyInstance;
  /** e.g. https://127.0.0.1:8200 */
  address: string;
  /** The CA to trust when Aegis made its own certificate. */
  caFile: string | null;
  /** The catalog's DNS interface, when on. */
  dns: RunningDns | null;
  logger: Logger;
  close(): Promise<void>;
}

/** Builds and starts one server from its config: storage, core (auto-unsealed if configured), TLS, HTTP. */
export async function startServer(cfg: ServerConfig, logger: Logger = createLogger(cfg.logLevel)): Promise<RunningServer> {
  const storage = new CachedStorage(new SqliteStorage({ path: cfg.storage.path, synchronous: cfg.storage.synchronous }));
  const autoUnseal = cfg.sealKeyFile ? new KeyFileUnseal(cfg.sealKeyFile) : null;
  const core = new Core({ storage, logger, autoUnseal, defaultTtl: cfg.defaultTtl, maxTtl: cfg.maxTtl, issueWorkers: cfg.issueWorkers });
  try {
    await core.start();
  } catch (err) {
    await storage.close();
    throw err;
  }
  const { host, port } = parseAddress(cfg.listener.address);
  const tls = cfg.listener.tlsDisable
    ? null
    : await serverTls({ dataDir: cfg.dataDir, certFile: cfg.listener.tlsCertFile, keyFile: cfg.listener.tlsKeyFile, names: [host, ...cfg.listener.tlsSan] });
  const app = buildHttpApi({ core, tls, maxRequestBytes: cfg.maxRequestBytes, requestTimeoutMs: cfg.requestTimeoutMs, rateLimit: cfg.rateLimit });
  try {
    await app.listen({ host, port });
  } catch (err) {
    await core.stop();
    throw err;
  }
  let dns: RunningDns | null = null;
  if (cfg.dnsAddress) {
    const d = parseAddress(cfg.dnsAddress);
    try {
      dns = await startDnsServer({ catalog: core.catalog, address: d.host, port: d.port, logger });
    } catch (err) {
      await app.close();
      await core.stop();
      throw new Error(`DNS interface could not listen on ${cfg.dnsAddress}: ${(err as Error).message} (set dns_addr, or "" to turn it off)`);
    }
  }
  const bound = app.server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const address = `${tls ? 'https' : 'http'}://${shownHost}:${bound.port}`;
  core.identity.issuerUrl = cfg.apiAddr ?? address;
  const onHup = () => {
    logger.info('SIGHUP: reopening audit devices');
    void core.audit.reopen();
  };
  process.on('SIGHUP', onHup);
  logger.info({ address, dns: dns ? `${dns.address}:${dns.port}` : null, storage: cfg.storage.path, sealed: core.barrier.sealed, initialized: core.seal.initialized }, 'Aegis listening');
  let closed = false;
  return {
    core, app, address, caFile: tls?.caFile ?? null, logger, dns,
    async close() {
      if (closed) return;
      closed = true;
      process.off('SIGHUP', onHup);
      await app.close();
      await dns?.close();
      await core.stop();
    },
  };
}

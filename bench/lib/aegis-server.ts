import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../../src/cli/client.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

export interface BenchServer {
  server: ServerProcess;
  dir: string;
  /** No token. */
  anon: ApiClient;
  /** The root token. */
  api: ApiClient;
  rootToken: string;
  stop(): Promise<void>;
}

/**
 * A real `aegis server` process for a benchmark (HTTPS, no rate limit, `synchronous` from BENCH_SYNC if set),
 * initialized, unsealed, with a file audit device on.
 */
export async function startBenchServer(label: string, init: Record<string, unknown> = {}): Promise<BenchServer> {
  const dir = mkdtempSync(join(tmpdir(), `aegis-bench-${label}-`));
  const server = await startServerProcess(dir, {
    data_dir: dir,
    listener: { address: '127.0.0.1:0' },
    rate_limit: { requests_per_second: 0 },
    log_level: 'warn',
    dns_addr: '127.0.0.1:0',
    ...(process.env.BENCH_SYNC ? { storage: { sqlite: { synchronous: process.env.BENCH_SYNC } } } : {}),
  });
  const caFile = join(dir, 'tls/ca.pem');
  const anon = new ApiClient({ address: server.address.origin, token: null, caCert: caFile });
  const r = (await anon.ok('PUT', 'sys/init', { body: { secret_shares: 1, secret_threshold: 1, ...init } })).body as { keys: string[]; root_token: string };
  await anon.ok('PUT', 'sys/unseal', { body: { key: r.keys[0] } });
  const api = new ApiClient({ address: server.address.origin, token: r.root_token, caCert: caFile });
  await api.ok('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: join(dir, 'audit.log') } } });
  return {
    server, dir, anon, api, rootToken: r.root_token,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

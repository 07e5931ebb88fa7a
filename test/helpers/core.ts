import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Core, SqliteStorage, type Operation, type Request } from '../../src/core/index.js';
import { KeyFileUnseal } from '../../src/core/seal/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { tempDir } from './temp.js';
import { onCleanup } from './cleanup.js';

export interface TestCore {
  core: Core;
  dir: string;
  dbPath: string;
  rootToken: string;
  keys: Buffer[];
  call(op: Operation, path: string, data?: Record<string, unknown>, token?: string | null): ReturnType<Core['handle']>;
}

/** A real core (SQLite file in a temp dir), initialized and unsealed; closed when the test file ends. */
export async function makeCore(opts: { shares?: number; threshold?: number; autoUnseal?: boolean } = {}): Promise<TestCore> {
  const dir = tempDir('core');
  const dbPath = join(dir, 'aegis.db');
  let auto: KeyFileUnseal | null = null;
  if (opts.autoUnseal) {
    KeyFileUnseal.generate(join(dir, 'unseal.key'));
    auto = new KeyFileUnseal(join(dir, 'unseal.key'));
  }
  const core = new Core({ storage: new SqliteStorage({ path: dbPath, synchronous: 'normal' }), logger: createLogger('silent'), autoUnseal: auto });
  await core.start();
  const init = await core.initialize(opts.shares ?? 1, opts.threshold ?? 1);
  if (core.barrier.sealed) {
    for (const k of init.keys.slice(0, opts.threshold ?? 1)) await core.submitUnsealKey(k.toString('hex'));
  }
  onCleanup(() => core.stop());
  const call: TestCore['call'] = (op, path, data = {}, token = init.rootToken) => core.handle(request(op, path, data, token));
  return { core, dir, dbPath, rootToken: init.rootToken, keys: init.keys, call };
}

export function request(operation: Operation, path: string, data: Record<string, unknown> = {}, token: string | null = null): Request {
  return { id: randomUUID(), operation, path, data, token, client: { address: '127.0.0.1' } };
}

import type pg from 'pg';
import type { SecureStore } from '../../core/barrier/index.js';
import { AegisError, BadRequestError, ConflictError, NotFoundError, TxnConflictError } from '../../core/errors.js';
import { DEFAULT_ROOT_ROTATION, mergeConfig, type DbConfig } from './config.js';
import { Connections, statementError } from './connections.js';
import { inTransaction } from './postgres.js';
import { generatePassword } from './templates.js';

// Layout inside the mount's view (Vault's names where Vault has them):
//   config/<name>          connection settings with the root credentials
//   role/<name>            dynamic roles
//   static-role/<name>     static roles, with the managed user's current password
//   root-rotation/<name>   write-ahead record of a root rotation in progress: the new password, stored first
export const CONFIG = 'config/';
export const ROLE = 'role/';
export const STATIC_ROLE = 'static-role/';
export const ROOT_WAL = 'root-rotation/';

interface RootWal {
  new_password: string;
  created: string;
}

/** Runs tasks with the same key one after another (config writes and root rotation; static role rotations). */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => { if (this.tails.get(key) === tail) this.tails.delete(key); });
    return run;
  }
}

/**
 * Database configs and their connections, and the root credential's life: verified before it is stored, rotated
 * with a write-ahead record so a rotation that reached the database is never lost.
 */
export class DatabaseEngine {
  readonly conns = new Connections();
  readonly lock = new KeyedLock();
  /** Configs with a root-rotation record to resolve before their next use. */
  private readonly pendingRoot = new Set<string>();
  /** The root password in effect on the database while storing it has failed (until the record is resolved). */
  private readonly rootOverride = new Map<string, string>();

  constructor(readonly store: SecureStore) {}

  async config(name: string): Promise<{ cfg: DbConfig; version: number } | null> {
    const found = await this.store.getJson<DbConfig>(CONFIG + name);
    return found ? { cfg: found.value, version: found.version } : null;
  }

  async listConfigs(): Promise<string[]> {
    return this.store.list(CONFIG);
  }

  /** Writes a config (fields over the stored one); with verify_connection, only if it connects. */
  async writeConfig(name: string, fields: Record<string, unknown>): Promise<void> {
    await this.lock.run(CONFIG + name, async () => {
      const current = await this.config(name);
      const cfg = mergeConfig(current?.cfg ?? null, fields);
      if (cfg.verify_connection) await this.conns.verify(name, cfg);
      // New root credentials from the administrator void any rotation record.
      await this.store.txn([
        { type: 'check', key: CONFIG + name, version: current?.version ?? 0 },
        { type: 'put', key: CONFIG + name, value: cfg },
        { type: 'delete', key: ROOT_WAL + name },
      ]).catch((err) => {
        throw err instanceof TxnConflictError ? new ConflictError(`config "${name}" was changed by another writer meanwhile; read it and retry`) : err;
      });
      this.forget(name);
    });
  }

  async deleteConfig(name: string): Promise<void> {
    await this.lock.run(CONFIG + name, async () => {
      await this.store.txn([{ type: 'delete', key: CONFIG + name }, { type: 'delete', key: ROOT_WAL + name }]);
      this.forget(name);
    });
  }

  /** Closes the config's pool so the next use reconnects (reset/:name, and after any config change). */
  reset(name: string): void {
    this.conns.invalidate(name);
  }

  private forget(name: string): void {
    this.pendingRoot.delete(name);
    this.rootOverride.delete(name);
    this.conns.invalidate(name);
  }

  /**
   * Runs `fn` on a pooled root connection of config `name`; `check` sees the config first (allowed_roles). A root
   * rotation record left by a crash or a failed store is resolved first.
   */
  async withDatabase<T>(name: string, fn: (c: pg.PoolClient, cfg: DbConfig) => Promise<T>, check?: (cfg: DbConfig | null) => void): Promise<T> {
    // Best effort: while the record cannot be resolved (storage or database down), the password in memory serves.
    if (this.pendingRoot.has(name)) await this.lock.run(CONFIG + name, () => this.recoverRoot(name)).catch(() => undefined);
    const loaded = await this.config(name);
    check?.(loaded?.cfg ?? null);
    if (!loaded) throw new NotFoundError(`no database config "${name}": write config/${name} first`);
    const password = this.rootOverride.get(name) ?? loaded.cfg.password;
    return this.conns.withClient(name, loaded.cfg, loaded.version, password, (c) => fn(c, loaded.cfg));
  }

  /** After unseal: rotation records found in storage are resolved in the background and before each use. */
  async setup(): Promise<void> {
    for (const name of await this.store.list(ROOT_WAL)) {
      this.pendingRoot.add(name);
      void this.lock.run(CONFIG + name, () => this.recoverRoot(name)).catch(() => undefined);
    }
  }

  async teardown(): Promise<void> {
    await this.conns.closeAll();
  }

  /**
   * rotate-root (Vault's order): the new password goes into a write-ahead record, then to the database with the
   * current root connection, then into the config (removing the record in the same transaction). If that last
   * store fails, the database already has the new password: Aegis keeps using it from memory and the record
   * lets it be stored later (on next use, or after a restart), so the root is never lost.
   */
  async rotateRoot(name: string): Promise<void> {
    await this.lock.run(CONFIG + name, async () => {
      if (this.pendingRoot.has(name)) await this.recoverRoot(name);
      const loaded = await this.config(name);
      if (!loaded) throw new NotFoundError(`no database config "${name}"`);
      const { cfg, version } = loaded;
      if (!cfg.username || !/\{\{\s*password\s*\}\}/.test(cfg.connection_url)) {
        throw new BadRequestError(`config "${name}": rotate-root needs the root user in username and password, with {{username}} and {{password}} in connection_url`);
      }
      const current = this.rootOverride.get(name) ?? cfg.password;
      const next = generatePassword();
      await this.store.put(ROOT_WAL + name, { new_password: next, created: new Date().toISOString() } satisfies RootWal);
      const statements = cfg.root_rotation_statements.length > 0 ? cfg.root_rotation_statements : DEFAULT_ROOT_ROTATION;
      try {
        await this.conns.withClient(name, cfg, version, current, (c) => inTransaction(c, statements, { name: cfg.username, password: next }));
      } catch (err) {
        // Usually the database kept the old password; if the commit's answer was lost it may not have: find out.
        this.pendingRoot.add(name);
        await this.recoverRoot(name).catch(() => undefined);
        throw statementError(name, 'change the root password', err, [next], [current]);
      }
      try {
        await this.store.txn([
          { type: 'check', key: CONFIG + name, version },
          { type: 'put', key: CONFIG + name, value: { ...cfg, password: next } },
          { type: 'delete', key: ROOT_WAL + name },
        ]);
      } catch {
        this.rootOverride.set(name, next);
        this.pendingRoot.add(name);
        this.conns.invalidate(name);
        throw new AegisError('ERR_INTERNAL', `the root password of database "${name}" was changed on the database but could not be stored; ` +
          'Aegis keeps using it and will store it from its recovery record on the next use of this connection or after a restart');
      }
      this.forget(name);
    });
  }

  /** Resolves a root rotation record: stores its password if the database takes it, drops it if not. Under the lock. */
  private async recoverRoot(name: string): Promise<void> {
    const wal = await this.store.getJson<RootWal>(ROOT_WAL + name);
    const loaded = await this.config(name);
    if (!wal || !loaded || loaded.cfg.password === wal.value.new_password) {
      if (wal) await this.store.delete(ROOT_WAL + name);
      this.pendingRoot.delete(name);
      this.rootOverride.delete(name);
      return;
    }
    const accepted = await this.conns.accepts(name, loaded.cfg, wal.value.new_password);
    if (accepted === 'unreachable') return;
    if (accepted) {
      // The rotation reached the database: finish it.
      this.rootOverride.set(name, wal.value.new_password);
      await this.store.txn([
        { type: 'check', key: CONFIG + name, version: loaded.version },
        { type: 'put', key: CONFIG + name, value: { ...loaded.cfg, password: wal.value.new_password } },
        { type: 'delete', key: ROOT_WAL + name },
      ]);
    } else {
      // The database never took it: the stored password is still the one.
      await this.store.delete(ROOT_WAL + name);
    }
    this.forget(name);
  }
}

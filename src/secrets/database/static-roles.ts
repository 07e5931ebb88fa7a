import { formatDuration } from '../../core/duration.js';
import { BadRequestError, NotFoundError } from '../../core/errors.js';
import { statementError } from './connections.js';
import { STATIC_ROLE, type DatabaseEngine } from './engine.js';
import { DEFAULT_ROTATION, inTransaction, roleOid } from './postgres.js';
import { checkAllowed } from './roles.js';
import { checkDbUsername, checkPlaceholders, generatePassword, parseStatements } from './templates.js';

/** Vault's minimum rotation period for static roles. */
export const MIN_ROTATION_PERIOD = 5;
/** After a failed rotation, the next try comes this soon (or at the period, if shorter). */
const RETRY_SECONDS = 10;
/** setTimeout's limit; longer waits are re-armed when they fire. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A static role (`static-roles/:name`): one existing database user whose password Aegis rotates. */
export interface StaticRole {
  db_name: string;
  username: string;
  /** Seconds. */
  rotation_period: number;
  rotation_statements: string[];
  credential_type: 'password';
  password: string;
  /** ISO time of the last rotation. */
  last_vault_rotation: string;
  /** Write-ahead: the password being set, stored before the database is changed and cleared once it is stored. */
  pending_password?: string;
}

/**
 * Static roles and their rotation schedule: one timer per role (cleared on teardown, re-armed by setup, so a
 * rotation that fell due while sealed runs right after unseal). A rotation stores its new password first; a
 * retry after a failure reuses it, so a password that reached the database is never lost.
 */
export class StaticRoles {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly engine: DatabaseEngine) {}

  async get(name: string): Promise<StaticRole | null> {
    return (await this.engine.store.getJson<StaticRole>(STATIC_ROLE + name))?.value ?? null;
  }

  list(): Promise<string[]> {
    return this.engine.store.list(STATIC_ROLE);
  }

  /** Creates a static role (rotating the user's password at once, as Vault does) or updates its schedule. */
  async write(name: string, f: Record<string, unknown>): Promise<void> {
    await this.engine.lock.run(STATIC_ROLE + name, async () => {
      const current = await this.get(name);
      if (f.credential_type !== undefined && f.credential_type !== 'password') throw new BadRequestError(`credential_type "${String(f.credential_type)}" is not supported; use "password"`);
      if (current && f.username !== undefined && f.username !== current.username) throw new BadRequestError('username cannot be changed: delete the static role and create it again');
      if (current && f.db_name !== undefined && f.db_name !== current.db_name) throw new BadRequestError('db_name cannot be changed: delete the static role and create it again');
      const period = (f.rotation_period as number | undefined) ?? current?.rotation_period;
      if (period === undefined) throw new BadRequestError('rotation_period is required, e.g. "24h"');
      if (period < MIN_ROTATION_PERIOD) throw new BadRequestError(`rotation_period must be at least ${MIN_ROTATION_PERIOD}s, got ${formatDuration(period)}`);
      const statements = f.rotation_statements !== undefined ? parseStatements('rotation_statements', f.rotation_statements) : current?.rotation_statements ?? [];
      checkPlaceholders('rotation_statements', statements, ['name', 'username', 'password']);
      if (current) {
        const updated = { ...current, rotation_period: period, rotation_statements: statements };
        await this.engine.store.put(STATIC_ROLE + name, updated);
        this.schedule(name, updated);
        return;
      }
      const dbName = f.db_name as string | undefined;
      const username = f.username as string | undefined;
      if (!dbName) throw new BadRequestError('db_name is required: the database config of the user');
      if (!username) throw new BadRequestError('username is required: the existing database user whose password Aegis manages');
      checkDbUsername(username);
      checkAllowed('static role', name, dbName, (await this.engine.config(dbName))?.cfg ?? null);
      const exists = await this.engine.withDatabase(dbName, (c) => roleOid(c, username))
        .catch((err) => { throw statementError(dbName, 'look up the user', err, []); });
      if (exists === null) throw new BadRequestError(`username "${username}" does not exist on database "${dbName}": static roles manage existing users`);
      const role: StaticRole = {
        db_name: dbName, username, rotation_period: period, rotation_statements: statements, credential_type: 'password',
        password: '', last_vault_rotation: '', pending_password: generatePassword(),
      };
      await this.engine.store.put(STATIC_ROLE + name, role);
      try {
        await this.apply(role);
      } catch (err) {
        // No static role without a password Aegis knows: the creation is undone.
        await this.engine.store.delete(STATIC_ROLE + name);
        throw err;
      }
      this.schedule(name, await this.commit(name, role));
    });
  }

  async delete(name: string): Promise<void> {
    await this.engine.lock.run(STATIC_ROLE + name, async () => {
      this.unschedule(name);
      await this.engine.store.delete(STATIC_ROLE + name);
    });
  }

  /** Rotates the password now (rotate-role, and the schedule). */
  async rotate(name: string): Promise<void> {
    await this.engine.lock.run(STATIC_ROLE + name, async () => {
      const role = await this.get(name);
      if (!role) throw new NotFoundError(`no static role "${name}"`);
      try {
        if (!role.pending_password) {
          role.pending_password = generatePassword();
          await this.engine.store.put(STATIC_ROLE + name, role);
        }
        await this.apply(role);
        this.schedule(name, await this.commit(name, role));
      } catch (err) {
        this.schedule(name, role, Math.min(RETRY_SECONDS, role.rotation_period) * 1000);
        throw err;
      }
    });
  }

  /** Sets the pending password on the database (the rotation statements, in one transaction). */
  private async apply(role: StaticRole): Promise<void> {
    const statements = role.rotation_statements.length > 0 ? role.rotation_statements : DEFAULT_ROTATION;
    const password = role.pending_password!;
    await this.engine.withDatabase(role.db_name, (c) => inTransaction(c, statements, { name: role.username, password }))
      .catch((err) => { throw statementError(role.db_name, `set the password of "${role.username}"`, err, [password]); });
  }

  private async commit(name: string, role: StaticRole): Promise<StaticRole> {
    const done: StaticRole = { ...role, password: role.pending_password!, last_vault_rotation: new Date().toISOString() };
    delete done.pending_password;
    await this.engine.store.put(STATIC_ROLE + name, done);
    return done;
  }

  async setup(): Promise<void> {
    this.closed = false;
    for (const name of await this.list()) {
      const role = await this.get(name);
      if (role) this.schedule(name, role);
    }
  }

  teardown(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Arms the role's timer for its next rotation (or `delayMs`); a rotation in the past runs at once. */
  private schedule(name: string, role: StaticRole, delayMs?: number): void {
    this.arm(name, delayMs ?? nextRotation(role) - Date.now());
  }

  private arm(name: string, delayMs: number): void {
    this.unschedule(name);
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(name);
      void this.due(name);
    }, Math.max(0, Math.min(delayMs, MAX_TIMER_MS)));
    timer.unref();
    this.timers.set(name, timer);
  }

  private unschedule(name: string): void {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }

  private async due(name: string): Promise<void> {
    let role: StaticRole | null;
    try {
      role = await this.get(name);
    } catch {
      return this.arm(name, RETRY_SECONDS * 1000);
    }
    if (!role || this.closed) return;
    // A timer capped at setTimeout's limit fires early: re-arm it.
    if (!role.pending_password && nextRotation(role) - Date.now() > 1000) return this.schedule(name, role);
    // A failed rotation re-arms the timer itself, for a retry.
    await this.rotate(name).catch(() => undefined);
  }
}

/** Unix ms of the next scheduled rotation. */
export function nextRotation(role: StaticRole): number {
  const last = Date.parse(role.last_vault_rotation);
  return (Number.isNaN(last) ? 0 : last) + role.rotation_period * 1000;
}

export function staticRoleView(r: StaticRole): Record<string, unknown> {
  return {
    db_name: r.db_name,
    username: r.username,
    rotation_period: r.rotation_period,
    rotation_statements: r.rotation_statements,
    last_vault_rotation: r.last_vault_rotation,
    credential_type: r.credential_type,
  };
}

export function staticCredsView(r: StaticRole): Record<string, unknown> {
  return {
    username: r.username,
    password: r.password,
    last_vault_rotation: r.last_vault_rotation,
    rotation_period: r.rotation_period,
    ttl: Math.max(0, Math.ceil((nextRotation(r) - Date.now()) / 1000)),
  };
}

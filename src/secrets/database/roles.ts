import { formatDuration } from '../../core/duration.js';
import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { Response, SecretContext, SecretType } from '../../core/request.js';
import type { DbConfig } from './config.js';
import { statementError } from './connections.js';
import { ROLE, type DatabaseEngine } from './engine.js';
import { DEFAULT_RENEW, inTransaction, removeFailedUser, revokeUser } from './postgres.js';
import { checkPlaceholders, formatExpiration, generatePassword, generateUsername, globMatch, parseStatements } from './templates.js';

/** A dynamic role (`roles/:name`): how to create, renew and revoke a user, and for how long it lives. */
export interface DynamicRole {
  db_name: string;
  creation_statements: string[];
  revocation_statements: string[];
  rollback_statements: string[];
  renew_statements: string[];
  /** Seconds; 0 = the system default / maximum. */
  default_ttl: number;
  max_ttl: number;
  credential_type: 'password';
}

export interface TtlLimits {
  defaultTtl: number;
  maxTtl: number;
}

/** What a lease of database credentials keeps (never returned to clients). */
interface CredsInternal {
  username: string;
  db_name: string;
  role: string;
}

export const SECRET_CREDS = 'creds';

/** Refuses a role whose config is missing or does not list it in allowed_roles (at write time and at use). */
export function checkAllowed(kind: string, roleName: string, dbName: string, cfg: DbConfig | null): void {
  if (!cfg) throw new BadRequestError(`${kind} "${roleName}": db_name "${dbName}" names no database config; write config/${dbName} first`);
  if (!globMatch(cfg.allowed_roles, roleName)) {
    throw new BadRequestError(`${kind} "${roleName}" is not allowed to use database "${dbName}": add it to that config's allowed_roles (now [${cfg.allowed_roles.join(', ')}])`);
  }
}

export class DynamicRoles {
  constructor(private readonly engine: DatabaseEngine, private readonly limits: TtlLimits) {}

  async get(name: string): Promise<DynamicRole | null> {
    return (await this.engine.store.getJson<DynamicRole>(ROLE + name))?.value ?? null;
  }

  list(): Promise<string[]> {
    return this.engine.store.list(ROLE);
  }

  delete(name: string): Promise<number | null> {
    return this.engine.store.delete(ROLE + name);
  }

  /** Creates or updates a role (fields not given keep their stored values, as in Vault); returns warnings. */
  async write(name: string, f: Record<string, unknown>): Promise<string[]> {
    const current = await this.get(name);
    const statements = (field: keyof DynamicRole) => (f[field] !== undefined ? parseStatements(field, f[field]) : (current?.[field] as string[] | undefined) ?? []);
    const role: DynamicRole = {
      db_name: (f.db_name as string | undefined) ?? current?.db_name ?? '',
      creation_statements: statements('creation_statements'),
      revocation_statements: statements('revocation_statements'),
      rollback_statements: statements('rollback_statements'),
      renew_statements: statements('renew_statements'),
      default_ttl: (f.default_ttl as number | undefined) ?? current?.default_ttl ?? 0,
      max_ttl: (f.max_ttl as number | undefined) ?? current?.max_ttl ?? 0,
      credential_type: 'password',
    };
    if (f.credential_type !== undefined && f.credential_type !== 'password') throw new BadRequestError(`credential_type "${String(f.credential_type)}" is not supported; use "password"`);
    if (!role.db_name) throw new BadRequestError('db_name is required: the database config this role uses');
    if (role.creation_statements.length === 0) throw new BadRequestError('creation_statements is required: the SQL that creates the user, e.g. CREATE ROLE "{{name}}" WITH LOGIN PASSWORD \'{{password}}\' VALID UNTIL \'{{expiration}}\'');
    checkPlaceholders('creation_statements', role.creation_statements);
    checkPlaceholders('revocation_statements', role.revocation_statements, ['name', 'username']);
    checkPlaceholders('rollback_statements', role.rollback_statements, ['name', 'username', 'password']);
    checkPlaceholders('renew_statements', role.renew_statements, ['name', 'username', 'expiration']);
    if (role.max_ttl > 0 && role.default_ttl > role.max_ttl) {
      throw new BadRequestError(`default_ttl (${formatDuration(role.default_ttl)}) must not be longer than max_ttl (${formatDuration(role.max_ttl)})`);
    }
    checkAllowed('role', name, role.db_name, (await this.engine.config(role.db_name))?.cfg ?? null);
    const warnings: string[] = [];
    if (role.default_ttl > this.limits.maxTtl) warnings.push(`default_ttl is longer than the system maximum (${formatDuration(this.limits.maxTtl)}); leases get the maximum`);
    if (role.max_ttl > this.limits.maxTtl) warnings.push(`max_ttl is longer than the system maximum (${formatDuration(this.limits.maxTtl)}); leases stop there`);
    await this.engine.store.put(ROLE + name, role);
    return warnings;
  }

  /**
   * New credentials: a fresh user made by the creation statements in one transaction, valid until its lease
   * expires. If any statement fails, nothing is left behind: the transaction is rolled back, then the rollback
   * statements run and the user is removed if any part of it survived (a statement that committed on its own).
   */
  async issue(roleName: string, displayName: string): Promise<Response> {
    const role = await this.get(roleName);
    if (!role) throw new BadRequestError(`unknown role: ${roleName}`);
    const maxTtl = Math.min(role.max_ttl || this.limits.maxTtl, this.limits.maxTtl);
    const ttl = Math.min(role.default_ttl || this.limits.defaultTtl, maxTtl);
    const username = generateUsername(displayName, roleName);
    const password = generatePassword();
    const values = { name: username, password, expiration: formatExpiration(Date.now() + ttl * 1000) };
    let attempted = false;
    try {
      await this.engine.withDatabase(role.db_name, async (c) => {
        attempted = true;
        await inTransaction(c, role.creation_statements, values, { serialize: true });
      }, (cfg) => checkAllowed('role', roleName, role.db_name, cfg));
    } catch (err) {
      if (attempted) {
        await this.engine.withDatabase(role.db_name, (c) => removeFailedUser(c, username, role.rollback_statements, values)).catch(() => undefined);
      }
      throw statementError(role.db_name, `create a user for role "${roleName}"`, err, [password]);
    }
    const internal: CredsInternal = { username, db_name: role.db_name, role: roleName };
    return {
      data: { username, password },
      secret: { type: SECRET_CREDS, ttl, maxTtl: role.max_ttl, renewable: true, internal: { ...internal } },
    };
  }

  /** The lease's renew and revoke (Vault's secretCreds): VALID UNTIL moves with the lease; revoke drops the user. */
  secretType(): SecretType {
    return {
      renew: async (ctx: SecretContext) => {
        const { username, db_name, role: roleName } = credsInternal(ctx);
        const role = await this.get(roleName);
        if (!role) throw new BadRequestError(`cannot renew: role "${roleName}" no longer exists`);
        const statements = role.renew_statements.length > 0 ? role.renew_statements : DEFAULT_RENEW;
        await this.engine.withDatabase(db_name, (c) => inTransaction(c, statements, { name: username, expiration: formatExpiration(ctx.expireTime) }))
          .catch((err) => { throw statementError(db_name, `extend user "${username}"`, err, []); });
      },
      revoke: async (ctx: SecretContext) => {
        const { username, db_name, role: roleName } = credsInternal(ctx);
        // A role deleted since the credentials were issued: Vault's default revocation still removes the user.
        const statements = (await this.get(roleName))?.revocation_statements ?? [];
        await this.engine.withDatabase(db_name, (c) => revokeUser(c, username, statements))
          .catch((err) => { throw statementError(db_name, `revoke user "${username}"`, err, []); });
      },
    };
  }
}

function credsInternal(ctx: SecretContext): CredsInternal {
  const { username, db_name, role } = ctx.internal;
  if (typeof username !== 'string' || typeof db_name !== 'string' || typeof role !== 'string') {
    throw new NotFoundError(`lease ${ctx.leaseId} does not describe database credentials`);
  }
  return { username, db_name, role };
}

export function roleView(r: DynamicRole): Record<string, unknown> {
  return {
    db_name: r.db_name,
    creation_statements: r.creation_statements,
    revocation_statements: r.revocation_statements,
    rollback_statements: r.rollback_statements,
    renew_statements: r.renew_statements,
    default_ttl: r.default_ttl,
    max_ttl: r.max_ttl,
    credential_type: r.credential_type,
  };
}

import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { HandlerContext, Response, Route } from '../../core/request.js';
import { configView } from './config.js';
import type { DatabaseEngine } from './engine.js';
import { roleView, type DynamicRoles } from './roles.js';
import { staticCredsView, staticRoleView, type StaticRoles } from './static-roles.js';
import { checkName } from './templates.js';

// Fields logged in clear by audit. Never: passwords, connection_url (it may hold a literal password), statements.
const PLAIN = [
  'plugin_name', 'plugin_version', 'allowed_roles', 'verify_connection', 'max_open_connections', 'max_connection_lifetime', 'db_name',
  'default_ttl', 'max_ttl', 'rotation_period', 'ttl', 'last_vault_rotation', 'keys', 'credential_type', 'password_policy',
];

const STATEMENTS = 'SQL: a list of strings, or one string (which may hold several statements separated by ";")';

const CONFIG_FIELDS: FieldSpecs = {
  plugin_name: { type: 'string', description: 'postgresql-database-plugin', max: 128 },
  connection_url: { type: 'string', description: 'postgresql://{{username}}:{{password}}@host:port/database', max: 4096 },
  username: { type: 'string', description: 'the root user Aegis connects as', max: 256 },
  password: { type: 'string', description: "the root user's password (kept in the barrier, never returned)", max: 1024 },
  verify_connection: { type: 'bool', description: 'connect before storing and refuse a config that does not', default: true },
  allowed_roles: { type: 'strings', description: 'roles that may use this connection ("*" = all); none by default', max: 1000 },
  max_open_connections: { type: 'int', description: 'pool size (default 4)', min: 1, max: 1000 },
  max_connection_lifetime: { type: 'duration', description: 'how long a pooled connection lives (0 = no limit)' },
  root_rotation_statements: { type: 'any', description: `rotate-root ${STATEMENTS}; default ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'` },
  password_policy: { type: 'string', description: 'not supported: Aegis generates 32-character passwords', max: 256 },
};

const ROLE_FIELDS: FieldSpecs = {
  db_name: { type: 'string', description: 'the database config to use', max: 128 },
  creation_statements: { type: 'any', description: `creates the user; ${STATEMENTS}; placeholders {{name}}, {{password}}, {{expiration}}` },
  revocation_statements: { type: 'any', description: `removes the user; default: revoke its privileges and DROP ROLE; ${STATEMENTS}` },
  rollback_statements: { type: 'any', description: `undoes a failed creation; ${STATEMENTS}` },
  renew_statements: { type: 'any', description: `extends the user; default ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'` },
  default_ttl: { type: 'duration', description: 'lease TTL of new credentials (0 = the system default)' },
  max_ttl: { type: 'duration', description: 'longest the credentials may be renewed to (0 = the system maximum)' },
  credential_type: { type: 'string', description: 'password', max: 32 },
};

const STATIC_FIELDS: FieldSpecs = {
  db_name: { type: 'string', description: 'the database config of the user', max: 128 },
  username: { type: 'string', description: 'the existing database user whose password Aegis rotates', max: 63 },
  rotation_period: { type: 'duration', description: 'how often the password is rotated (at least 5s)' },
  rotation_statements: { type: 'any', description: `sets the password; default ALTER USER "{{name}}" WITH PASSWORD '{{password}}'` },
  credential_type: { type: 'string', description: 'password', max: 32 },
};

const name = (ctx: HandlerContext, kind: string) => checkName(kind, ctx.params.name!);
/** Vault: an empty listing is a 404 with no error messages. */
const listing = (keys: string[]): Response => (keys.length === 0 ? { status: 404, bare: { errors: [] } } : { data: { keys } });

export function databaseRoutes(engine: DatabaseEngine, roles: DynamicRoles, statics: StaticRoles): Route[] {
  return [
    {
      pattern: 'config', summary: 'Lists database connections.', auditPlain: PLAIN,
      operations: { list: async () => listing(await engine.listConfigs()) },
    },
    {
      pattern: 'config/:name',
      summary: 'A database connection: plugin, connection URL with root credentials (never returned), allowed roles, pool size.',
      fields: CONFIG_FIELDS, auditPlain: PLAIN,
      exists: async (ctx) => (await engine.config(ctx.params.name!)) !== null,
      operations: {
        read: async (ctx) => {
          const found = await engine.config(name(ctx, 'config'));
          if (!found) throw new NotFoundError(`no database config "${ctx.params.name}"`);
          return { data: configView(found.cfg) };
        },
        update: async (ctx) => {
          if (ctx.fields.password_policy) throw new BadRequestError('password_policy is not supported: Aegis generates 32-character passwords from [A-Za-z0-9_-]');
          await engine.writeConfig(name(ctx, 'config'), ctx.fields);
        },
        delete: async (ctx) => { await engine.deleteConfig(name(ctx, 'config')); },
      },
    },
    {
      pattern: 'reset/:name', summary: "Closes the connection's pool; the next use reconnects.", auditPlain: PLAIN,
      operations: {
        update: async (ctx) => {
          if (!(await engine.config(name(ctx, 'config')))) throw new NotFoundError(`no database config "${ctx.params.name}"`);
          engine.reset(ctx.params.name!);
        },
      },
    },
    {
      pattern: 'rotate-root/:name', summary: 'Rotates the root password: afterwards only Aegis knows it.', auditPlain: PLAIN,
      operations: { update: async (ctx) => { await engine.rotateRoot(name(ctx, 'config')); } },
    },
    {
      pattern: 'roles', summary: 'Lists dynamic roles.', auditPlain: PLAIN,
      operations: { list: async () => listing(await roles.list()) },
    },
    {
      pattern: 'roles/:name', summary: 'A dynamic role: the statements that create, renew and revoke users, and their TTLs.',
      fields: ROLE_FIELDS, auditPlain: PLAIN,
      exists: async (ctx) => (await roles.get(ctx.params.name!)) !== null,
      operations: {
        read: async (ctx) => {
          const r = await roles.get(name(ctx, 'role'));
          if (!r) throw new NotFoundError(`no role "${ctx.params.name}"`);
          return { data: roleView(r) };
        },
        update: async (ctx) => {
          const warnings = await roles.write(name(ctx, 'role'), ctx.fields);
          return warnings.length > 0 ? { warnings } : undefined;
        },
        delete: async (ctx) => { await roles.delete(name(ctx, 'role')); },
      },
    },
    {
      pattern: 'creds/:name', summary: 'New database credentials for a role, with a lease.', auditPlain: PLAIN,
      operations: { read: (ctx) => roles.issue(name(ctx, 'role'), ctx.caller?.displayName ?? 'token') },
    },
    {
      pattern: 'static-roles', summary: 'Lists static roles.', auditPlain: PLAIN,
      operations: { list: async () => listing(await statics.list()) },
    },
    {
      pattern: 'static-roles/:name', summary: 'A static role: an existing database user whose password Aegis rotates on a schedule.',
      fields: STATIC_FIELDS, auditPlain: PLAIN,
      exists: async (ctx) => (await statics.get(ctx.params.name!)) !== null,
      operations: {
        read: async (ctx) => {
          const r = await statics.get(name(ctx, 'static role'));
          if (!r) throw new NotFoundError(`no static role "${ctx.params.name}"`);
          return { data: staticRoleView(r) };
        },
        update: async (ctx) => { await statics.write(name(ctx, 'static role'), ctx.fields); },
        delete: async (ctx) => { await statics.delete(name(ctx, 'static role')); },
      },
    },
    {
      pattern: 'static-creds/:name', summary: "A static role's current password and when it rotates next.", auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const r = await statics.get(name(ctx, 'static role'));
          if (!r || !r.last_vault_rotation) throw new NotFoundError(`no static role "${ctx.params.name}"`);
          return { data: staticCredsView(r) };
        },
      },
    },
    {
      pattern: 'rotate-role/:name', summary: "Rotates a static role's password now.", auditPlain: PLAIN,
      operations: { update: async (ctx) => { await statics.rotate(name(ctx, 'static role')); } },
    },
  ];
}

import pg from 'pg';
import { render, type TemplateValues } from './templates.js';

// What the engine does on PostgreSQL (Vault's postgresql-database-plugin). Statements Aegis writes itself quote
// identifiers with pg's escapeIdentifier and pass values as parameters (or inline numbers it computed);
// administrators' statements are templates (see templates.ts).

export const DEFAULT_RENEW = [`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}';`];
export const DEFAULT_ROTATION = [`ALTER USER "{{name}}" WITH PASSWORD '{{password}}';`];

const ident = (name: string) => pg.escapeIdentifier(name);

/**
 * Creating and revoking users GRANTs and REVOKEs on shared objects (a table's ACL is one catalog row), and
 * PostgreSQL fails concurrent updates of one catalog row with "tuple concurrently updated" instead of waiting.
 * So those transactions take this transaction-scoped advisory lock first: they queue in the database (across
 * every Aegis server using it) rather than fail, and the lock can never outlive its transaction.
 */
export const CATALOG_LOCK = 0x41656769; // "Aegi"
const LOCK_SQL = `SELECT pg_catalog.pg_advisory_xact_lock(${CATALOG_LOCK})`;
const MAX_ATTEMPTS = 3;

/** A conflict worth one more try: serialization failure, deadlock, or a catalog row updated by someone else. */
function retryable(err: unknown): boolean {
  if (!(err instanceof pg.DatabaseError)) return false;
  return err.code === '40001' || err.code === '40P01' || (err.code === 'XX000' && /tuple concurrently (updated|deleted)/.test(err.message));
}

/**
 * Runs the rendered statements in one transaction: all take effect or none does. With `serialize`, under the
 * catalog lock. The whole transaction goes as one simple-protocol query (BEGIN; …; COMMIT), so a lock is held
 * for the server's work only, never across a round trip to a busy Aegis. A conflict with someone else's
 * concurrent change is retried (bounded).
 */
export async function inTransaction(c: pg.ClientBase, statements: readonly string[], values: TemplateValues, opts: { serialize?: boolean } = {}): Promise<void> {
  // Each entry on its own lines, so an entry that ends in a `--` comment cannot swallow what follows.
  const body = statements.map((s) => `${render(s, values)}\n;\n`).join('');
  const sql = `BEGIN;\n${opts.serialize ? `${LOCK_SQL};\n` : ''}${body}COMMIT;`;
  for (let attempt = 1; ; attempt++) {
    try {
      await c.query(sql);
      return;
    } catch (err) {
      // A failed statement leaves the transaction aborted (or it ended at a statement's own COMMIT): end it.
      await c.query('ROLLBACK').catch(() => undefined);
      if (attempt >= MAX_ATTEMPTS || !retryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
    }
  }
}

/** The role's OID, or null when no such role exists. */
export async function roleOid(c: pg.ClientBase, username: string): Promise<number | null> {
  const r = await c.query<{ oid: number }>('SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1', [username]);
  return r.rows[0]?.oid ?? null;
}

/** Per connection: whether pg_terminate_backend takes a timeout (PostgreSQL 14+). */
const waitingTerminate = new WeakMap<pg.ClientBase, boolean>();

/**
 * Ends every session of the role (by OID, so sessions that outlive a DROP ROLE are found too) and waits until they
 * are gone: pg_terminate_backend(pid, timeout) on PostgreSQL 14+, polling pg_stat_activity before that.
 */
export async function terminateSessions(c: pg.ClientBase, oid: number): Promise<void> {
  const where = 'FROM pg_catalog.pg_stat_activity WHERE usesysid = $1 AND pid <> pg_backend_pid()';
  if (waitingTerminate.get(c) !== false) {
    try {
      await c.query(`SELECT pg_catalog.pg_terminate_backend(pid, 5000) ${where}`, [oid]);
      waitingTerminate.set(c, true);
      return;
    } catch (err) {
      if (!(err instanceof pg.DatabaseError && err.code === '42883')) throw err;
      waitingTerminate.set(c, false);
    }
  }
  await c.query(`SELECT pg_catalog.pg_terminate_backend(pid) ${where}`, [oid]);
  for (let i = 0; i < 50; i++) {
    const left = await c.query(`SELECT 1 ${where}`, [oid]);
    if (left.rowCount === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface RoleFacts {
  oid: number;
  db: string;
  /** Schemas other than public where the role holds table or column privileges. */
  schemas: string[];
}

/** The role's OID, the current database and the schemas it has grants in (from the catalogs: fast, unlike information_schema). */
async function roleFacts(c: pg.ClientBase, username: string): Promise<RoleFacts | null> {
  const r = await c.query<RoleFacts>(
    `SELECT r.oid, current_database() AS db, ARRAY(
       SELECT n.nspname FROM pg_catalog.pg_class k JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace
         CROSS JOIN LATERAL pg_catalog.aclexplode(k.relacl) a WHERE k.relacl IS NOT NULL AND a.grantee = r.oid
       UNION
       SELECT n.nspname FROM pg_catalog.pg_attribute t JOIN pg_catalog.pg_class k ON k.oid = t.attrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace
         CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a WHERE t.attacl IS NOT NULL AND a.grantee = r.oid
     )::text[] AS schemas
     FROM pg_catalog.pg_roles r WHERE r.rolname = $1`, [username]);
  return r.rows[0] ?? null;
}

/**
 * Revokes a dynamic user: no new logins, its sessions ended, then the role's revocation statements (in one
 * transaction) or Vault's default for postgres, then any session that raced the drop ended too. A role that no
 * longer exists is already revoked (revocation is retried after failures, so it must be idempotent).
 */
export async function revokeUser(c: pg.ClientBase, username: string, statements: readonly string[]): Promise<void> {
  const facts = await roleFacts(c, username);
  if (!facts) return;
  // Best effort: a custom revocation may keep the role, and a root without rights on it still gets to the statements.
  await c.query(`ALTER ROLE ${ident(username)} NOLOGIN`).catch(() => undefined);
  await terminateSessions(c, facts.oid);
  if (statements.length > 0) await inTransaction(c, statements, { name: username }, { serialize: true });
  else await defaultRevoke(c, username, facts);
  await terminateSessions(c, facts.oid);
}

/**
 * Vault's default postgres revocation (defaultDeleteUser): revoke what the user holds in every schema it has grants
 * in and in `public`, and CONNECT on the database, then drop the role. First all of it in one transaction under
 * the catalog lock; if anything fails, again statement by statement (each under a savepoint), continuing past
 * failures to remove as much access as possible as Vault does. If the drop fails (something still depends on
 * the user), the revocations still commit and the error is thrown: the lease retries.
 */
async function defaultRevoke(c: pg.ClientBase, username: string, facts: RoleFacts): Promise<void> {
  const u = ident(username);
  const revokes: string[] = [];
  for (const s of facts.schemas) {
    if (s === 'public') continue;
    revokes.push(`REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA ${ident(s)} FROM ${u}`, `REVOKE USAGE ON SCHEMA ${ident(s)} FROM ${u}`);
  }
  revokes.push(
    `REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM ${u}`,
    `REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM ${u}`,
    `REVOKE ALL PRIVILEGES ON ALL FUNCTIONS IN SCHEMA public FROM ${u}`,
    `REVOKE USAGE ON SCHEMA public FROM ${u}`,
    `REVOKE CONNECT ON DATABASE ${ident(facts.db)} FROM ${u}`,
  );
  const drop = `DROP ROLE IF EXISTS ${u}`;
  try {
    await inTransaction(c, [...revokes, drop], {}, { serialize: true });
    return;
  } catch {
    // Fall through to Vault's one-by-one path, which says what failed.
  }
  await c.query(`BEGIN; ${LOCK_SQL}`);
  try {
    let last: unknown = null;
    for (const sql of revokes) {
      try {
        await c.query(`SAVEPOINT aegis_revoke; ${sql}; RELEASE SAVEPOINT aegis_revoke`);
      } catch (err) {
        last = err;
        await c.query('ROLLBACK TO SAVEPOINT aegis_revoke');
      }
    }
    try {
      await c.query(`SAVEPOINT aegis_revoke; ${drop}; RELEASE SAVEPOINT aegis_revoke`);
    } catch (err) {
      await c.query('ROLLBACK TO SAVEPOINT aegis_revoke');
      await c.query('COMMIT');
      throw last ? new Error(`${(err as Error).message} (an earlier revoke failed too: ${(last as Error).message})`) : err;
    }
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * After a failed creation: runs the role's rollback statements (best effort) and removes the user if anything of
 * it survived (a statement that committed on its own), so a failed request leaves no role behind.
 */
export async function removeFailedUser(c: pg.ClientBase, username: string, rollback: readonly string[], values: TemplateValues): Promise<void> {
  for (const s of rollback) await c.query(render(s, values)).catch(() => undefined);
  if ((await roleOid(c, username)) === null) return;
  await revokeUser(c, username, []);
}

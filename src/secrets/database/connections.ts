import pg from 'pg';
import { AegisError, UpstreamError } from '../../core/errors.js';
import { connectionString, describeConnection, type DbConfig } from './config.js';

const CONNECT_TIMEOUT_MS = 10_000;
const VERIFY_TIMEOUT_MS = 5_000;
/** Each statement Aegis sends may run this long before PostgreSQL cancels it. */
const STATEMENT_TIMEOUT_MS = 30_000;

interface PoolEntry {
  pool: pg.Pool;
  /** Which stored config (storage version) and password the pool was made for. */
  key: string;
}

/**
 * One pg Pool per database config, made on first use and replaced when the config (or the root password) changes;
 * every pool is closed on teardown. Errors name the connection but never carry a password: messages are built
 * here, and anything PostgreSQL or the driver said is scrubbed of the passwords in play.
 */
export class Connections {
  private readonly pools = new Map<string, PoolEntry>();

  /** Runs `fn` with a pooled client of the config's root connection. */
  async withClient<T>(name: string, cfg: DbConfig, version: number, password: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const pool = this.pool(name, cfg, version, password);
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw connectError(name, cfg, err, [password]);
    }
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      // A connection that failed at the protocol level (not an SQL error) is not given back to the pool.
      if (!(err instanceof pg.DatabaseError) && !(err instanceof UpstreamError)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Connects once with `password` and runs `SELECT 1` (verify_connection); throws UpstreamError when that fails. */
  async verify(name: string, cfg: DbConfig, password = cfg.password): Promise<void> {
    const client = new pg.Client({ connectionString: connectionString(cfg, password), connectionTimeoutMillis: VERIFY_TIMEOUT_MS });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SELECT 1');
    } catch (err) {
      throw connectError(name, cfg, err, [password]);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Whether `password` logs in as the config's root user (used to find out which root password the database has). */
  async accepts(name: string, cfg: DbConfig, password: string): Promise<boolean | 'unreachable'> {
    try {
      await this.verify(name, cfg, password);
      return true;
    } catch (err) {
      // 28P01 invalid_password, 28000 invalid_authorization_specification: the database answered "no".
      const code = (err as UpstreamError & { pgCode?: string }).pgCode;
      return code === '28P01' || code === '28000' ? false : 'unreachable';
    }
  }

  /** Drops the config's pool (config changed or deleted); in-flight clients finish first. */
  invalidate(name: string): void {
    const e = this.pools.get(name);
    if (!e) return;
    this.pools.delete(name);
    void e.pool.end().catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((e) => e.pool.end().catch(() => undefined)));
  }

  private pool(name: string, cfg: DbConfig, version: number, password: string): pg.Pool {
    const key = `${version}:${password === cfg.password ? 'stored' : 'override'}`;
    const found = this.pools.get(name);
    if (found?.key === key) return found.pool;
    if (found) this.invalidate(name);
    const pool = new pg.Pool({
      connectionString: connectionString(cfg, password),
      max: cfg.max_open_connections,
      maxLifetimeSeconds: cfg.max_connection_lifetime,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      application_name: 'aegis',
    });
    // An idle client that loses its connection (server restart) emits here; without a listener Node would crash.
    pool.on('error', () => undefined);
    this.pools.set(name, { pool, key });
    return pool;
  }
}

/** Replaces every given secret (and its URL encoding) in a message. */
export function scrub(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const s of secrets) {
    if (!s) continue;
    out = out.split(s).join('*****');
    const enc = encodeURIComponent(s);
    if (enc !== s) out = out.split(enc).join('*****');
  }
  return out;
}

/**
 * Also replaces any piece of at least 4 characters of the given random passwords: PostgreSQL's lexer splits a
 * misquoted password at "-" or digits, and its syntax errors quote the piece they stopped at — which may be
 * shorter than 4, so the quoted token of a syntax error is masked whenever it is part of a password.
 */
export function scrubPieces(message: string, generated: readonly string[]): string {
  let out = scrub(message, generated).replace(/(at or near )"([^"]*)"/g, (whole, lead: string, token: string) =>
    token !== '' && generated.some((s) => s.includes(token)) ? `${lead}"*****"` : whole);
  for (const s of generated) {
    for (let len = s.length - 1; len >= 4; len--) {
      for (let i = 0; i + len <= s.length; i++) {
        const piece = s.slice(i, i + len);
        if (out.includes(piece)) out = out.split(piece).join('*****');
      }
    }
  }
  return out;
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(messageOf).join('; ');
  const e = err as { message?: string; code?: string };
  return e?.message || e?.code || String(err);
}

/** "cannot connect to database …" with the driver's reason, scrubbed; keeps PostgreSQL's SQLSTATE for callers. */
export function connectError(name: string, cfg: DbConfig, err: unknown, secrets: readonly string[]): UpstreamError {
  const reason = scrub(messageOf(err), [...secrets, cfg.password]);
  const e = new UpstreamError(`cannot connect to database ${describeConnection(name, cfg)}: ${reason}`) as UpstreamError & { pgCode?: string };
  if (err instanceof pg.DatabaseError) e.pgCode = err.code;
  return e;
}

/**
 * A statement the database refused: names the connection and what Aegis was doing; scrubbed of the random
 * passwords Aegis generated (`generated`, even in pieces) and of any other secret in play (`exact`).
 */
export function statementError(name: string, what: string, err: unknown, generated: readonly string[], exact: readonly string[] = []): AegisError {
  // Aegis's own errors (a refused config, a missing role, a connection error) already say what happened.
  if (err instanceof AegisError) return err;
  const code = err instanceof pg.DatabaseError && err.code ? ` (SQLSTATE ${err.code})` : '';
  return new UpstreamError(`database "${name}" refused to ${what}: ${scrubPieces(scrub(messageOf(err), exact), generated)}${code}`);
}

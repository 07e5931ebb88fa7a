import { BadRequestError } from '../../core/errors.js';
import { checkPlaceholders, parseStatements } from './templates.js';

export const PLUGIN_NAME = 'postgresql-database-plugin';
/** Vault's default for postgres (max_open_connections). */
export const DEFAULT_MAX_OPEN = 4;
export const DEFAULT_ROOT_ROTATION = [`ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}'`];

/** One database connection (`config/:name`), kept in the barrier. The root password is never returned. */
export interface DbConfig {
  plugin_name: string;
  /** `postgresql://{{username}}:{{password}}@host:port/db` (placeholders filled from username/password). */
  connection_url: string;
  username: string;
  password: string;
  verify_connection: boolean;
  /** Role names (globs with `*`) allowed to use this connection; empty = none, as in Vault. */
  allowed_roles: string[];
  max_open_connections: number;
  /** Seconds a pooled connection lives (0 = no limit). */
  max_connection_lifetime: number;
  root_rotation_statements: string[];
}

const URL_PLACEHOLDERS = ['username', 'password'] as const;

/** Applies written fields over the stored config (Vault updates only the fields given); validates the result. */
export function mergeConfig(current: DbConfig | null, f: Record<string, unknown>): DbConfig {
  const pluginName = (f.plugin_name as string | undefined) ?? current?.plugin_name;
  if (!pluginName) throw new BadRequestError(`plugin_name is required: "${PLUGIN_NAME}"`);
  if (pluginName !== PLUGIN_NAME) throw new BadRequestError(`plugin_name "${pluginName}" is not supported; Aegis has "${PLUGIN_NAME}"`);
  const url = (f.connection_url as string | undefined) ?? current?.connection_url;
  if (!url) throw new BadRequestError('connection_url is required, e.g. "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres"');
  checkConnectionUrl(url);
  const rotation = f.root_rotation_statements !== undefined ? parseStatements('root_rotation_statements', f.root_rotation_statements) : current?.root_rotation_statements ?? [];
  checkPlaceholders('root_rotation_statements', rotation, ['name', 'username', 'password']);
  const cfg: DbConfig = {
    plugin_name: pluginName,
    connection_url: url,
    username: (f.username as string | undefined) ?? current?.username ?? '',
    password: (f.password as string | undefined) ?? current?.password ?? '',
    verify_connection: (f.verify_connection as boolean | undefined) ?? current?.verify_connection ?? true,
    allowed_roles: (f.allowed_roles as string[] | undefined) ?? current?.allowed_roles ?? [],
    max_open_connections: (f.max_open_connections as number | undefined) ?? current?.max_open_connections ?? DEFAULT_MAX_OPEN,
    max_connection_lifetime: (f.max_connection_lifetime as number | undefined) ?? current?.max_connection_lifetime ?? 0,
    root_rotation_statements: rotation,
  };
  if (url.includes('{{username}}') && cfg.username === '') throw new BadRequestError('connection_url uses {{username}}: set username');
  if (url.includes('{{password}}') && cfg.password === '') throw new BadRequestError('connection_url uses {{password}}: set password');
  return cfg;
}

function checkConnectionUrl(url: string): void {
  checkPlaceholders('connection_url', [url], URL_PLACEHOLDERS);
  if (!/^postgres(?:ql)?:\/\//.test(url)) throw new BadRequestError('connection_url must be a URL starting with postgresql:// (or postgres://)');
  let parsed: URL;
  try {
    parsed = new URL(url.replace(/\{\{\s*(username|password)\s*\}\}/g, 'x'));
  } catch {
    throw new BadRequestError('connection_url is not a valid URL');
  }
  if (!parsed.hostname) throw new BadRequestError('connection_url names no host');
}

/** The URL to connect with: placeholders filled with the (URL-encoded) root credentials. */
export function connectionString(cfg: DbConfig, password = cfg.password): string {
  return cfg.connection_url
    .replace(/\{\{\s*username\s*\}\}/g, encodeURIComponent(cfg.username))
    .replace(/\{\{\s*password\s*\}\}/g, encodeURIComponent(password));
}

/** A URL's literal password (if any) replaced by `*****`, as Vault masks it on read. */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)([^@/]*)@/i, (whole, scheme: string, userinfo: string) => {
    const i = userinfo.indexOf(':');
    if (i === -1) return whole;
    const pass = userinfo.slice(i + 1);
    if (/^\{\{\s*password\s*\}\}$/.test(pass) || pass === '') return whole;
    return `${scheme}${userinfo.slice(0, i)}:*****@`;
  });
}

/** Names the connection in messages: the URL with the user filled in and no password. */
export function describeConnection(name: string, cfg: DbConfig): string {
  const shown = maskUrl(cfg.connection_url)
    .replace(/\{\{\s*username\s*\}\}/g, cfg.username)
    .replace(/\{\{\s*password\s*\}\}/g, '*****');
  return `"${name}" (${shown})`;
}

/** Vault's read shape: connection_details without the password. */
export function configView(cfg: DbConfig): Record<string, unknown> {
  return {
    plugin_name: cfg.plugin_name,
    plugin_version: '',
    connection_details: {
      connection_url: maskUrl(cfg.connection_url),
      username: cfg.username,
      max_open_connections: cfg.max_open_connections,
      max_connection_lifetime: `${cfg.max_connection_lifetime}s`,
    },
    allowed_roles: cfg.allowed_roles,
    verify_connection: cfg.verify_connection,
    password_policy: '',
    root_credentials_rotate_statements: cfg.root_rotation_statements,
  };
}

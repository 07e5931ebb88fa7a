import { randomInt } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';

// Statement templates (Vault's dbplugin statements): `{{name}}` / `{{username}}`, `{{password}}`, `{{expiration}}`,
// substituted raw, as Vault does, into statements the administrator writes with their own quotes
// (`CREATE ROLE "{{name}}" … PASSWORD '{{password}}'`). What Aegis substitutes is generated from a charset that
// cannot leave a quoted identifier or literal ([A-Za-z0-9_-]), or checked against one (static role user names).

export const PLACEHOLDERS = ['name', 'username', 'password', 'expiration'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

/**
 * Vault's statement field forms: a list of strings, one string (kept whole: one entry may hold several
 * `;`-separated statements), a JSON array of strings in a string, or either of those base64-encoded.
 */
export function parseStatements(field: string, raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  let list: unknown = raw;
  if (typeof raw === 'string') {
    let text = raw.trim();
    const decoded = decodeBase64(text);
    if (decoded !== null) text = decoded.trim();
    if (text.startsWith('[')) {
      try {
        list = JSON.parse(text);
      } catch {
        throw new BadRequestError(`${field}: starts with "[" but is not a JSON array of strings`);
      }
    } else {
      list = text === '' ? [] : [text];
    }
  }
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) throw new BadRequestError(`${field}: expected a list of SQL statements (strings)`);
  const out = (list as string[]).map((s) => s.trim()).filter((s) => s !== '');
  if (out.length > 100) throw new BadRequestError(`${field}: at most 100 entries`);
  if (out.some((s) => s.length > 64 * 1024)) throw new BadRequestError(`${field}: an entry is longer than 64 KiB`);
  return out;
}

/** Strict base64 of printable text (SQL always has spaces or punctuation base64 lacks, so plain SQL never matches). */
function decodeBase64(text: string): string | null {
  if (text.length < 8 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return null;
  const decoded = Buffer.from(text, 'base64').toString('utf8');
  // eslint-disable-next-line no-control-regex
  if (decoded.includes('\uFFFD') || /[\u0000-\u0008\u000e-\u001f]/.test(decoded)) return null;
  return decoded;
}

/**
 * Refuses any `{{…}}` but the four Aegis knows, naming it, and those that have no value where the statements run
 * (e.g. `{{password}}` in revocation statements). Checked when the role is written, not at first use.
 */
export function checkPlaceholders(field: string, statements: readonly string[], available: readonly Placeholder[] = PLACEHOLDERS): void {
  for (const s of statements) {
    for (const m of s.matchAll(PLACEHOLDER)) {
      const name = m[1]!;
      if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
        throw new BadRequestError(`${field}: unknown placeholder "{{${name}}}"; allowed: ${available.map((p) => `{{${p}}}`).join(', ')}`);
      }
      if (!(available as readonly string[]).includes(name)) {
        throw new BadRequestError(`${field}: placeholder "{{${name}}}" has no value in these statements; allowed here: ${available.map((p) => `{{${p}}}`).join(', ')}`);
      }
    }
  }
}

export type TemplateValues = Partial<Record<Placeholder, string>>;

/** Substitutes the placeholders; `{{username}}` is an alias of `{{name}}`. */
export function render(statement: string, values: TemplateValues): string {
  return statement.replace(PLACEHOLDER, (_whole, name: string) => {
    const key = name === 'username' ? 'name' : name;
    const v = values[key as Placeholder];
    if (v === undefined) throw new BadRequestError(`statement uses {{${name}}}, which has no value here`);
    return v;
  });
}

/** Vault's `{{expiration}}` format (Go's "2006-01-02 15:04:05-0700"), in UTC; PostgreSQL reads it for VALID UNTIL. */
export function formatExpiration(unixMs: number): string {
  const d = new Date(unixMs);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}+0000`;
}

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const ALNUM = UPPER + LOWER + DIGITS;
const PASSWORD_CHARS = `${ALNUM}-_`;

function randomString(length: number, chars: string): string {
  let s = '';
  for (let i = 0; i < length; i++) s += chars[randomInt(chars.length)];
  return s;
}

/**
 * A 32-character password from [A-Za-z0-9_-] (about 190 bits) with at least one upper, lower, digit and dash, as
 * Vault's default policy asks; it starts with a letter so no tool reads it as an option.
 */
export function generatePassword(length = 32): string {
  for (let attempt = 0; attempt < 100; attempt++) {
    const p = randomString(1, UPPER + LOWER) + randomString(length - 1, PASSWORD_CHARS);
    if (/[A-Z]/.test(p) && /[a-z]/.test(p) && /[0-9]/.test(p) && p.includes('-')) return p;
  }
  throw new Error('password generation did not meet its own rules in 100 tries');
}

/** PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1). */
export const PG_IDENTIFIER_MAX = 63;

/** Vault's postgres username template: `v-<display name ≤8>-<role ≤8>-<random 20>-<unix seconds>`, at most 63 characters. */
export function generateUsername(displayName: string, roleName: string, nowMs = Date.now()): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 8);
  const name = `v-${clean(displayName) || 'token'}-${clean(roleName)}-${randomString(20, ALNUM)}-${Math.floor(nowMs / 1000)}`;
  return name.slice(0, PG_IDENTIFIER_MAX);
}

/** Vault's name rule for configs and roles (framework.GenericNameRegex). */
export function checkName(kind: string, name: string): string {
  if (!/^\w(?:[\w.-]*\w)?$/.test(name) || name.length > 128) {
    throw new BadRequestError(`${kind} name "${name}": use letters, digits, "_", "-" and "." (not at the ends), at most 128 characters`);
  }
  return name;
}

/**
 * An existing database user that a static role manages: substituted raw into statements, so it must not be able
 * to close a quoted identifier or literal (no quotes, backslashes, `$` or control characters).
 */
export function checkDbUsername(name: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.@-]*$/.test(name) || Buffer.byteLength(name) > PG_IDENTIFIER_MAX) {
    throw new BadRequestError(`username "${name}": Aegis manages users named with letters, digits, "_", ".", "@" and "-" (at most ${PG_IDENTIFIER_MAX} bytes), so the name cannot break out of a quoted statement`);
  }
  return name;
}

/** Vault's allowed_roles matching (strutil.StrListContainsGlob): `*` matches any run of characters. */
export function globMatch(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => {
    if (!p.includes('*')) return p === name;
    const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return re.test(name);
  });
}

import type { SecureStore } from '../../core/barrier/index.js';
import { BadRequestError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';

// A Vault PKI role (Vault API docs, "Create/Update Role"): which names a certificate may carry, its key and its
// lifetime. Field names and defaults are Vault's, except `key_type`, which defaults to `ec` here (Vault: `rsa`).

export type PkiKeyType = 'ec' | 'rsa';

export interface PkiRole {
  /** Seconds; 0 = the system default (or max_ttl, whichever is shorter). */
  ttl: number;
  /** Seconds; 0 = the system maximum. */
  max_ttl: number;
  allow_localhost: boolean;
  allowed_domains: string[];
  allow_bare_domains: boolean;
  allow_subdomains: boolean;
  allow_glob_domains: boolean;
  allow_wildcard_certificates: boolean;
  allow_any_name: boolean;
  enforce_hostnames: boolean;
  allow_ip_sans: boolean;
  allowed_uri_sans: string[];
  server_flag: boolean;
  client_flag: boolean;
  key_type: PkiKeyType;
  /** Resolved on write (0 becomes the key type's default), as Vault does. */
  key_bits: number;
  no_store: boolean;
  require_cn: boolean;
  use_csr_common_name: boolean;
  use_csr_sans: boolean;
}

export const KEY_BITS: Record<PkiKeyType, readonly number[]> = { ec: [256, 384], rsa: [2048, 3072, 4096] };
const DEFAULT_BITS: Record<PkiKeyType, number> = { ec: 256, rsa: 2048 };
const ROLE_NAME = /^\w(?:[\w.-]{0,126}\w)?$/;
// RFC 1035 §2.3.4: a name is at most 253 characters written out.
const MAX_DOMAIN = 253;

export const ROLE_FIELDS: FieldSpecs = {
  ttl: { type: 'duration', description: 'lifetime of certificates when the request names none (0 = the system default, or max_ttl if shorter)', default: 0 },
  max_ttl: { type: 'duration', description: 'longest lifetime a request may ask for (0 = the system maximum)', default: 0 },
  allow_localhost: { type: 'bool', description: 'allow "localhost" and "localdomain" as names', default: true },
  allowed_domains: { type: 'strings', description: 'domains names are matched against (see allow_bare_domains, allow_subdomains, allow_glob_domains)', default: [], max: 100 },
  allow_bare_domains: { type: 'bool', description: 'allow a name equal to one of allowed_domains', default: false },
  allow_subdomains: { type: 'bool', description: 'allow subdomains of allowed_domains (including wildcards *.domain)', default: false },
  allow_glob_domains: { type: 'bool', description: 'treat "*" in allowed_domains as a shell-style glob (it matches across labels)', default: false },
  allow_wildcard_certificates: { type: 'bool', description: 'allow RFC 6125 wildcard names (one "*" in the left-most label)', default: true },
  allow_any_name: { type: 'bool', description: 'allow any name (enforce_hostnames and allow_wildcard_certificates still apply)', default: false },
  enforce_hostnames: { type: 'bool', description: 'names (and the host part of email addresses) must be valid hostnames', default: true },
  allow_ip_sans: { type: 'bool', description: 'allow IP subject alternative names', default: true },
  allowed_uri_sans: { type: 'strings', description: 'URI SANs allowed, with "*" globs (e.g. https://*.example.com/*); spiffe:// URIs are never allowed here', default: [], max: 100 },
  server_flag: { type: 'bool', description: 'set the serverAuth extended key usage', default: true },
  client_flag: { type: 'bool', description: 'set the clientAuth extended key usage', default: true },
  key_type: { type: 'string', description: 'key type of generated keys and of keys accepted in CSRs: ec or rsa', default: 'ec', max: 16 },
  key_bits: { type: 'int', description: 'ec: 256 or 384; rsa: 2048, 3072 or 4096 (0 = 256 for ec, 2048 for rsa); for CSRs, the minimum', default: 0, min: 0, max: 8192 },
  no_store: { type: 'bool', description: 'do not record issued certificates (they can then be neither read back nor revoked)', default: false },
  require_cn: { type: 'bool', description: 'a common name is required', default: true },
  use_csr_common_name: { type: 'bool', description: 'sign: take the common name from the CSR (common_name is the fallback)', default: true },
  use_csr_sans: { type: 'bool', description: 'sign: take the SANs from the CSR instead of alt_names, ip_sans and uri_sans', default: true },
};

export function isRoleName(name: string): boolean {
  return ROLE_NAME.test(name);
}

export function checkRoleName(name: string): string {
  if (!isRoleName(name)) throw new BadRequestError(`role name "${name}": use letters, digits, "_", "-" and "." (at most 128, starting and ending with a letter or digit)`);
  return name;
}

/**
 * The role a write asks for: on `update` every field not given takes its default (Vault's POST replaces the
 * role); on `patch` only the fields given change.
 */
export function roleFrom(fields: Record<string, unknown>, base: PkiRole | null, given: readonly string[]): PkiRole {
  const pick = (name: keyof PkiRole) => (base === null || given.includes(name) ? fields[name] : base[name]);
  const role = Object.fromEntries(Object.keys(ROLE_FIELDS).map((k) => [k, pick(k as keyof PkiRole)])) as unknown as PkiRole;
  return validateRole(role, base === null || given.includes('key_bits'));
}

function validateRole(role: PkiRole, bitsGiven: boolean): PkiRole {
  if (role.key_type !== 'ec' && role.key_type !== 'rsa') {
    throw new BadRequestError(`key_type "${String(role.key_type)}" is not supported here: use ec or rsa`);
  }
  // A patch that changes key_type alone moves key_bits to the new type's default when the old value does not fit.
  if (role.key_bits === 0 || (!bitsGiven && !KEY_BITS[role.key_type].includes(role.key_bits))) role.key_bits = DEFAULT_BITS[role.key_type];
  if (!KEY_BITS[role.key_type].includes(role.key_bits)) {
    throw new BadRequestError(`key_bits ${role.key_bits} is not valid for key_type ${role.key_type}: use ${KEY_BITS[role.key_type].join(', ')} (or 0 for ${DEFAULT_BITS[role.key_type]})`);
  }
  if (role.max_ttl > 0 && role.ttl > role.max_ttl) throw new BadRequestError(`ttl (${role.ttl}s) must not be longer than max_ttl (${role.max_ttl}s)`);
  role.allowed_domains = role.allowed_domains.map((d) => d.trim()).filter((d) => d !== '');
  for (const d of role.allowed_domains) {
    if (d.length > MAX_DOMAIN) throw new BadRequestError(`allowed_domains: "${d.slice(0, 40)}…" is longer than ${MAX_DOMAIN} characters`);
  }
  role.allowed_uri_sans = role.allowed_uri_sans.map((u) => u.trim()).filter((u) => u !== '');
  for (const u of role.allowed_uri_sans) {
    if (u.length > 2048) throw new BadRequestError(`allowed_uri_sans: "${u.slice(0, 40)}…" is longer than 2048 characters`);
    // A glob that can only ever match SPIFFE IDs is a mistake worth saying at write time; issuance refuses them anyway.
    if (/^spiffe:/i.test(u)) {
      throw new BadRequestError(`allowed_uri_sans "${u}": SPIFFE IDs are issued only through identity/ (attestation), never by a PKI role`);
    }
  }
  return role;
}

/** The role's stored form is its response: Vault returns ttl and max_ttl as seconds. */
export function roleView(role: PkiRole): Record<string, unknown> {
  return { ...role, allowed_domains: [...role.allowed_domains], allowed_uri_sans: [...role.allowed_uri_sans] };
}

/** The mount's own records: roles, and which certificates this mount issued (so it reads and revokes only those). */
export class PkiStore {
  constructor(private readonly store: SecureStore) {}

  async role(name: string): Promise<PkiRole | null> {
    return (await this.store.getJson<PkiRole>(`roles/${name}`))?.value ?? null;
  }

  async putRole(name: string, role: PkiRole): Promise<void> {
    await this.store.put(`roles/${name}`, role);
  }

  async deleteRole(name: string): Promise<void> {
    await this.store.delete(`roles/${name}`);
  }

  listRoles(): Promise<string[]> {
    return this.store.list('roles/');
  }

  /** `serial` as hex without separators. */
  async markIssued(serial: string, entry: { role: string; not_after: string }): Promise<void> {
    await this.store.put(`certs/${serial}`, entry);
  }

  async issuedHere(serial: string): Promise<boolean> {
    return (await this.store.get(`certs/${serial}`)) !== null;
  }

  listIssued(): Promise<string[]> {
    return this.store.list('certs/');
  }
}

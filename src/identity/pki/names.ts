import { isIP } from 'node:net';
import { BadRequestError } from '../../core/errors.js';
import type { PkiRole } from './roles.js';

// Which names a role lets into a certificate: Vault's rules (builtin/logical/pki, validateNames and
// generateCreationBundle), with a refusal that names the name and the rule that refused it.

/** Vault's hostname check: dot-separated LDH labels (RFC 1123 §2.1), an optional trailing dot. */
const HOSTNAME = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\.)*(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])\.?$/;
const MAX_NAME = 253;
// RFC 5280 Appendix A: ub-common-name.
const MAX_CN = 64;

/** The names asked for, from the request body or (sign with use_csr_*) from the CSR. */
export interface NameRequest {
  commonName: string;
  /** DNS names and email addresses (an "@" makes an email address, as in Vault). */
  altNames: string[];
  ipSans: string[];
  uriSans: string[];
  excludeCnFromSans: boolean;
  /** Where the SANs came from, for messages: "the request" or "the CSR". */
  sanSource: string;
}

export interface CertNames {
  commonName: string;
  dnsNames: string[];
  emails: string[];
  ips: string[];
  uris: string[];
}

/** Checks every requested name against the role; any name it does not allow refuses the whole request (Vault). */
export function checkNames(role: PkiRole, roleName: string, req: NameRequest): CertNames {
  const cn = req.commonName.trim();
  if (cn === '' && role.require_cn) {
    throw new BadRequestError(`common_name is required by role "${roleName}" (require_cn is true)${role.use_csr_common_name ? ', either in the request or as the CSR’s subject CN' : ''}`);
  }
  if (cn.length > MAX_CN) {
    throw new BadRequestError(`common name "${cn.slice(0, 40)}…" is longer than ${MAX_CN} characters (RFC 5280 ub-common-name); put long names in alt_names`);
  }
  const dnsNames: string[] = [];
  const emails: string[] = [];
  // Vault: the CN goes into the SANs (email or DNS, whichever it is) unless excluded, and only if it is one.
  if (cn !== '' && !req.excludeCnFromSans) {
    if (cn.includes('@')) emails.push(cn);
    else if (HOSTNAME.test(wildcardReduced(cn))) dnsNames.push(cn);
  }
  for (const name of req.altNames.map((n) => n.trim()).filter((n) => n !== '')) (name.includes('@') ? emails : dnsNames).push(name);

  // The CN is checked even when it is left out of the SANs.
  if (cn !== '') {
    const why = nameRefusal(role, cn);
    if (why) throw new BadRequestError(`common name "${cn}" not allowed by role "${roleName}": ${why}`);
  }
  for (const name of [...dnsNames, ...emails]) {
    const why = nameRefusal(role, name);
    if (why) throw new BadRequestError(`subject alternate name "${name}" not allowed by role "${roleName}": ${why}`);
  }
  return {
    commonName: cn,
    dnsNames: dedupe(dnsNames),
    emails: dedupe(emails),
    ips: checkIps(role, roleName, req.ipSans, req.sanSource),
    uris: checkUris(role, roleName, req.uriSans, req.sanSource),
  };
}

/** Why `role` refuses `name`, or null when it allows it. */
export function nameRefusal(role: PkiRole, name: string): string | null {
  if (name.length > MAX_NAME) return `longer than ${MAX_NAME} characters`;
  let host = name;
  let isEmail = false;
  if (name.includes('@')) {
    const parts = name.split('@');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') return 'an email address needs one "@" with text on both sides';
    host = parts[1]!;
    isEmail = true;
  }
  let isWildcard = false;
  if (host.includes('*')) {
    if (isEmail) return 'an email address cannot hold a wildcard';
    if (!role.allow_wildcard_certificates) return 'it is a wildcard name and allow_wildcard_certificates is false';
    const reduced = wildcardReduced(host);
    if (reduced === host) return 'a wildcard must be one "*" in the left-most label of a name of two labels or more (RFC 6125 §6.4.3)';
    host = reduced;
    isWildcard = true;
  }
  // enforce_hostnames applies even to allow_any_name (Vault).
  if (role.enforce_hostnames && !HOSTNAME.test(host)) return `"${host}" is not a valid hostname (enforce_hostnames is true)`;
  if (role.allow_any_name) return null;

  const lower = host.toLowerCase();
  if (role.allow_localhost) {
    if (!isWildcard && (lower === 'localhost' || lower === 'localdomain')) return null;
    if (role.allow_subdomains && (/\.(?:localhost|localdomain)\.?$/.test(lower) || (isWildcard && (lower === 'localhost' || lower === 'localdomain')))) return null;
  }
  for (const domain of role.allowed_domains.map((d) => d.toLowerCase())) {
    if (role.allow_bare_domains && (name.toLowerCase() === domain || (isEmail && lower === domain))) return null;
    if (role.allow_subdomains && (lower.endsWith(`.${domain}`) || (isWildcard && lower === domain))) return null;
    if (role.allow_glob_domains && domain.includes('*') && globMatch(domain, name.toLowerCase())) return null;
  }
  if (role.allowed_domains.length === 0) return 'the role allows no domains: set allowed_domains (or allow_any_name)';
  const ways = [`allow_bare_domains=${role.allow_bare_domains}`, `allow_subdomains=${role.allow_subdomains}`, `allow_glob_domains=${role.allow_glob_domains}`];
  return `it matches none of allowed_domains [${role.allowed_domains.join(', ')}] (${ways.join(', ')})`;
}

/** `*.example.com`, `foo*.example.com` → `example.com`; the name itself if it is no valid RFC 6125 wildcard. */
function wildcardReduced(name: string): string {
  const dot = name.indexOf('.');
  if (dot <= 0) return name;
  const label = name.slice(0, dot);
  const rest = name.slice(dot + 1);
  if (label.split('*').length !== 2 || !/^[a-zA-Z0-9*-]+$/.test(label) || rest === '' || rest.includes('*')) return name;
  return rest;
}

function checkIps(role: PkiRole, roleName: string, ips: readonly string[], source: string): string[] {
  const list = ips.map((i) => i.trim()).filter((i) => i !== '');
  if (list.length === 0) return [];
  if (!role.allow_ip_sans) throw new BadRequestError(`IP SANs [${list.join(', ')}] in ${source} not allowed by role "${roleName}": allow_ip_sans is false`);
  for (const ip of list) if (isIP(ip) === 0) throw new BadRequestError(`ip_sans: "${ip}" is not a valid IPv4 or IPv6 address`);
  return dedupe(list);
}

function checkUris(role: PkiRole, roleName: string, uris: readonly string[], source: string): string[] {
  const list = uris.map((u) => u.trim()).filter((u) => u !== '');
  for (const uri of list) {
    let scheme: string;
    try {
      scheme = new URL(uri).protocol;
    } catch {
      throw new BadRequestError(`uri_sans: "${uri}" is not a valid URI`);
    }
    // IA5String (RFC 5280 §4.2.1.6): ASCII only.
    if (!/^[\x21-\x7e]+$/.test(uri)) throw new BadRequestError(`uri_sans: "${uri}" must be ASCII without spaces (percent-encode other characters)`);
    // A certificate with a SPIFFE ID signed by the trust domain's CA *is* an X509-SVID: peers and this server
    // would take it as that workload's identity. Those are issued only after attestation, by identity/.
    if (scheme === 'spiffe:') {
      throw new BadRequestError(`URI SAN "${uri}" in ${source} not allowed by role "${roleName}": SPIFFE IDs are issued only through identity/ (attestation), never by a PKI role`);
    }
    if (role.allowed_uri_sans.length === 0) throw new BadRequestError(`URI SAN "${uri}" in ${source} not allowed by role "${roleName}": the role allows no URI SANs (allowed_uri_sans is empty)`);
    if (!role.allowed_uri_sans.some((pattern) => globMatch(pattern, uri))) {
      throw new BadRequestError(`URI SAN "${uri}" in ${source} not allowed by role "${roleName}": it matches none of allowed_uri_sans [${role.allowed_uri_sans.join(', ')}]`);
    }
  }
  return dedupe(list);
}

/**
 * Shell-style glob where `*` matches any run of characters, dots and slashes included (Vault uses
 * ryanuber/go-glob). Iterative with one backtrack point, so a pattern full of stars stays O(pattern × value).
 */
export function globMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let mark = 0;
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = v;
    } else if (p < pattern.length && pattern[p] === value[v]) {
      p++;
      v++;
    } else if (star !== -1) {
      p = star + 1;
      v = ++mark;
    } else {
      return false;
    }
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

function dedupe(list: readonly string[]): string[] {
  const seen = new Set<string>();
  return list.filter((n) => {
    const k = n.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

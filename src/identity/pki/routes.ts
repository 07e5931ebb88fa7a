import { X509Certificate } from 'node:crypto';
import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { HandlerContext, Response, Route } from '../../core/request.js';
import type { Issuer } from '../ca.js';
import type { CertRecord } from '../cert-records.js';
import { formatSerial } from '../leaf-builder.js';
import { toPem } from '../pem.js';
import type { IdentityService } from '../service.js';
import { checkCsrKey, generateRoleKey, privateKeyPem, readCsr, signLeaf, type GeneratedKey, type ParsedRequest } from './certificate.js';
import { checkNames, type NameRequest } from './names.js';
import { checkRoleName, isRoleName, PkiStore, roleFrom, ROLE_FIELDS, roleView, type PkiRole } from './roles.js';

// Vault's PKI secrets engine API (the subset below, same paths, fields and response shapes), backed by the trust
// domain's CA: the active intermediate signs. Left out: issuer/key management (the CA is identity/'s), der and
// pem_bundle formats, other_sans, not_after, subject fields (ou, organization, …), key_usage overrides, leases,
// tidy, OCSP.

export interface PkiLimits {
  /** Certificate lifetime when neither the request nor the role names one (Vault: the system default lease TTL). */
  defaultTtl: number;
  /** Longest lifetime when the role sets no max_ttl (Vault: the system max lease TTL). */
  maxTtl: number;
}

// Certificates, serials, names and roles are public: audit logs them in clear. `private_key` never is.
const PLAIN = ['certificate', 'issuing_ca', 'ca_chain', 'serial_number', 'expiration', 'private_key_type', 'common_name', 'alt_names', 'ip_sans',
  'uri_sans', 'csr', 'ttl', 'format', 'private_key_format', 'exclude_cn_from_sans', 'remove_roots_from_chain', 'revocation_time',
  'revocation_time_rfc3339', 'issuer_id', 'keys', ...Object.keys(ROLE_FIELDS)];

const NAME_FIELDS: FieldSpecs = {
  common_name: { type: 'string', description: 'the subject CN; also put in the SANs unless exclude_cn_from_sans', max: 1024 },
  alt_names: { type: 'strings', description: 'DNS names and email addresses for the SANs (comma-separated or a list)', max: 100 },
  ip_sans: { type: 'strings', description: 'IP addresses for the SANs', max: 100 },
  uri_sans: { type: 'strings', description: 'URIs for the SANs (must match the role’s allowed_uri_sans)', max: 100 },
  other_sans: { type: 'strings', description: 'not supported here (refused when given)', max: 100 },
  ttl: { type: 'duration', description: 'lifetime (default: the role’s ttl; capped by its max_ttl and by the CA’s expiry)' },
  not_after: { type: 'string', description: 'not supported here (refused when given): use ttl', max: 64 },
  format: { type: 'string', description: 'pem (der and pem_bundle are not supported here)', default: 'pem', max: 16 },
  exclude_cn_from_sans: { type: 'bool', description: 'leave the common name out of the SANs', default: false },
  remove_roots_from_chain: { type: 'bool', description: 'leave self-signed roots out of ca_chain', default: false },
};

const ISSUE_FIELDS: FieldSpecs = {
  ...NAME_FIELDS,
  private_key_format: { type: 'string', description: 'der (SEC 1 / PKCS #1 in PEM) or pkcs8', default: 'der', max: 16 },
};

const SIGN_FIELDS: FieldSpecs = {
  ...NAME_FIELDS,
  csr: { type: 'string', description: 'PEM PKCS#10 request, made with the key to certify', required: true, max: 16_384 },
};

interface IssueFields {
  common_name?: string;
  alt_names?: string[];
  ip_sans?: string[];
  uri_sans?: string[];
  other_sans?: string[];
  ttl?: number;
  not_after?: string;
  format: string;
  private_key_format?: string;
  exclude_cn_from_sans: boolean;
  remove_roots_from_chain: boolean;
  csr?: string;
}

/** `3a:0f:…` or `3a-0f-…` (Vault accepts both) to the bare lowercase hex records are keyed by. */
function serialHex(serial: string): string {
  const hex = serial.trim().toLowerCase().replace(/[:-]/g, '');
  if (!/^[0-9a-f]{2,40}$/.test(hex)) throw new BadRequestError(`serial "${serial}": expected colon- or hyphen-separated hex, like 3a:0f:…`);
  return hex;
}

function unixSeconds(iso: string): number {
  return Math.floor(Date.parse(iso) / 1000);
}

function revocationView(rec: CertRecord): Record<string, unknown> {
  return { revocation_time: rec.revoked_at ? unixSeconds(rec.revoked_at) : 0, revocation_time_rfc3339: rec.revoked_at ?? '' };
}

export function pkiRoutes(identity: IdentityService, store: PkiStore, limits: PkiLimits): Route[] {
  const roleName = (ctx: HandlerContext) => checkRoleName(ctx.params.name ?? ctx.params.role!);

  async function mustRole(name: string): Promise<PkiRole> {
    const role = await store.role(name);
    // Vault's wording, kept for clients that match on it.
    if (!role) throw new BadRequestError(`unknown role: ${name} (create it at roles/${name})`);
    return role;
  }

  function caChain(issuer: Issuer, withRoots: boolean): string[] {
    const chain = issuer.chain.map((der) => toPem(der));
    return withRoots ? [...chain, ...identity.ca.bundle().map((r) => toPem(r.certDer))] : chain;
  }

  /** A certificate this mount issued and recorded; null for any other serial (SVIDs, other mounts' certificates). */
  async function ownRecord(serial: string): Promise<CertRecord | null> {
    const hex = serialHex(serial);
    if (!(await store.issuedHere(hex))) return null;
    return identity.records.get(hex);
  }

  function lifetime(role: PkiRole, requested: number | undefined, warnings: string[]): number {
    const max = role.max_ttl || limits.maxTtl;
    let ttl = requested || role.ttl || Math.min(limits.defaultTtl, max);
    if (ttl > max) {
      warnings.push(`TTL ${ttl}s is longer than the permitted max_ttl ${max}s, so ${max}s is used`);
      ttl = max;
    }
    return ttl;
  }

  function nameRequest(role: PkiRole, f: IssueFields, csr: ParsedRequest | null, warnings: string[]): NameRequest {
    const csrSans = csr !== null && role.use_csr_sans;
    let commonName = csr && role.use_csr_common_name ? csr.commonName : '';
    if (commonName !== '' && f.common_name && f.common_name !== commonName) {
      warnings.push(`common_name "${f.common_name}" was ignored: the role takes the CSR's CN "${commonName}" (use_csr_common_name)`);
    }
    if (commonName === '') commonName = f.common_name ?? '';
    if (csrSans && (f.alt_names?.length || f.ip_sans?.length || f.uri_sans?.length)) {
      warnings.push('alt_names, ip_sans and uri_sans were ignored: the role takes the SANs from the CSR (use_csr_sans)');
    }
    return {
      commonName,
      altNames: csrSans ? [...csr.dnsNames, ...csr.emails] : f.alt_names ?? [],
      ipSans: csrSans ? csr.ips : f.ip_sans ?? [],
      uriSans: csrSans ? csr.uris : f.uri_sans ?? [],
      excludeCnFromSans: f.exclude_cn_from_sans,
      sanSource: csrSans ? 'the CSR' : 'the request',
    };
  }

  /** issue/:role and sign/:role: check everything first, then make the key (issue), sign, record, answer. */
  async function issue(ctx: HandlerContext, mode: 'issue' | 'sign'): Promise<Response> {
    const name = roleName(ctx);
    const role = await mustRole(name);
    const f = ctx.fields as unknown as IssueFields;
    if (f.format !== 'pem') throw new BadRequestError(`format "${f.format}" is not supported here: use pem (Vault's der and pem_bundle are not available)`);
    if (mode === 'issue' && f.private_key_format !== 'der' && f.private_key_format !== 'pkcs8') {
      throw new BadRequestError(`private_key_format "${String(f.private_key_format)}": use der or pkcs8`);
    }
    if (f.other_sans?.length) throw new BadRequestError('other_sans is not supported here: use alt_names, ip_sans or uri_sans');
    if (f.not_after !== undefined) throw new BadRequestError('not_after is not supported here: use ttl');
    const warnings: string[] = [];
    let csr: ParsedRequest | null = null;
    if (mode === 'sign') {
      csr = await readCsr(f.csr!);
      checkCsrKey(role, name, csr);
    }
    const names = checkNames(role, name, nameRequest(role, f, csr, warnings));
    const ttl = lifetime(role, f.ttl, warnings);
    const issuer = identity.ca.activeIssuer();
    const wanted = new Date(Date.now() + ttl * 1000);
    // Vault's leaf_not_after_behavior=truncate: a leaf never outlives its issuer.
    if (wanted > issuer.notAfter) warnings.push(`the certificate ends when the issuing CA does (${issuer.notAfter.toISOString()}), before the ${ttl}s asked for`);
    // issue/:role makes the key pair here and returns the private key once, unstored: that is Vault's behaviour for
    // this path. sign/:role keeps the key with its owner.
    let key: GeneratedKey | null = null;
    if (mode === 'issue') key = await generateRoleKey(role);
    const leaf = await signLeaf(issuer, { names, key: key ?? csr!, serverAuth: role.server_flag, clientAuth: role.client_flag, notAfter: wanted });
    const serialNumber = formatSerial(Buffer.from(leaf.serial, 'hex'));
    if (!role.no_store) {
      const notAfter = leaf.notAfter.toISOString();
      // The certificate leaves only once recorded, so it can always be read back and revoked.
      await Promise.all([
        store.markIssued(leaf.serial, { role: name, not_after: notAfter }),
        identity.records.add({ serial_number: serialNumber, spiffe_id: null, certificate: leaf.pem, issuer_id: issuer.id, not_after: notAfter }),
      ]);
    }
    const data: Record<string, unknown> = {
      certificate: leaf.pem,
      issuing_ca: toPem(issuer.certDer),
      ca_chain: caChain(issuer, !f.remove_roots_from_chain),
      serial_number: serialNumber,
      expiration: Math.floor(leaf.notAfter.getTime() / 1000),
    };
    if (key) {
      data.private_key = privateKeyPem(key, f.private_key_format as 'der' | 'pkcs8');
      data.private_key_type = key.keyType;
    }
    return warnings.length > 0 ? { data, warnings } : { data };
  }

  async function writeRole(ctx: HandlerContext, patch: boolean): Promise<Response> {
    const name = roleName(ctx);
    const base = patch ? await store.role(name) : null;
    if (patch && !base) throw new NotFoundError(`no role named "${name}" to patch: write it first`);
    const role = roleFrom(ctx.fields, base, Object.keys(ctx.req.data));
    await store.putRole(name, role);
    return { data: roleView(role) };
  }

  async function revoke(ctx: HandlerContext): Promise<Response> {
    const { serial_number: serial, certificate } = ctx.fields as { serial_number?: string; certificate?: string };
    if (!serial === !certificate) throw new BadRequestError('give exactly one of serial_number or certificate');
    let rec: CertRecord | null;
    if (certificate) {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(certificate);
      } catch {
        throw new BadRequestError('certificate: not a PEM certificate');
      }
      rec = await ownRecord(cert.serialNumber);
      // The serial alone could name another certificate: only the very certificate issued here is accepted.
      if (rec && !new X509Certificate(rec.certificate).raw.equals(cert.raw)) rec = null;
    } else {
      rec = await ownRecord(serial!);
    }
    if (!rec) throw new NotFoundError(`no certificate ${serial ?? 'like that'} was issued and recorded by ${ctx.mountPath} (certificates of no_store roles cannot be revoked)`);
    if (rec.revoked_at) return { data: revocationView(rec) };
    // Vault: an expired certificate is not put on the CRL.
    if (Date.parse(rec.not_after) <= Date.now()) return { data: null, warnings: [`certificate ${rec.serial_number} has expired; it was not added to the CRL`] };
    const r = await identity.revokeSerial(rec.serial_number);
    return { data: { revocation_time: r.revocation_time, revocation_time_rfc3339: new Date(r.revocation_time * 1000).toISOString() } };
  }

  async function readCert(ctx: HandlerContext): Promise<Response> {
    const serial = ctx.params.serial!;
    const issuer = identity.ca.activeIssuer();
    // Vault's special serials.
    const none = { revocation_time: 0, revocation_time_rfc3339: '', issuer_id: String(issuer.id) };
    if (serial === 'ca') return { data: { certificate: toPem(issuer.certDer), ...none } };
    if (serial === 'ca_chain') {
      const chain = caChain(issuer, true);
      return { data: { certificate: chain.join(''), ca_chain: chain, ...none } };
    }
    if (serial === 'crl') return { data: { certificate: toPem((await identity.crlsDer())[0]!, 'X509 CRL'), ...none } };
    const rec = await ownRecord(serial);
    if (!rec) throw new NotFoundError(`no certificate with serial ${serial} was issued and recorded by ${ctx.mountPath}`);
    return { data: { certificate: rec.certificate, ...revocationView(rec), issuer_id: String(rec.issuer_id) } };
  }

  return [
    {
      pattern: 'roles/', summary: 'role names', auditPlain: PLAIN,
      operations: {
        list: async () => {
          const keys = await store.listRoles();
          // Vault: an empty listing is a 404 with no error messages.
          return keys.length === 0 ? { status: 404, bare: { errors: [] } } : { data: { keys } };
        },
      },
    },
    {
      pattern: 'roles/:name', summary: 'a role: the names, key and lifetime certificates issued under it may have',
      fields: ROLE_FIELDS, auditPlain: PLAIN,
      // Runs before authorization: it must not throw, a bad name is refused by the handler.
      exists: async (ctx) => isRoleName(ctx.params.name!) && (await store.role(ctx.params.name!)) !== null,
      operations: {
        read: async (ctx) => {
          const role = await store.role(roleName(ctx));
          if (!role) throw new NotFoundError(`no role named "${roleName(ctx)}"`);
          return { data: roleView(role) };
        },
        update: (ctx) => writeRole(ctx, false),
        patch: (ctx) => writeRole(ctx, true),
        // Vault: deleting a role does not revoke what was issued under it.
        delete: async (ctx) => { await store.deleteRole(roleName(ctx)); },
      },
    },
    {
      pattern: 'issue/:role', summary: 'a new key pair and a certificate for it, under a role (the private key is not stored)',
      fields: ISSUE_FIELDS, auditPlain: PLAIN,
      operations: { update: (ctx) => issue(ctx, 'issue') },
    },
    {
      pattern: 'sign/:role', summary: 'a certificate for the key of a CSR, under a role',
      fields: SIGN_FIELDS, auditPlain: PLAIN,
      operations: { update: (ctx) => issue(ctx, 'sign') },
    },
    {
      pattern: 'revoke', summary: 'revoke a certificate this mount issued (serial_number or certificate); it joins the CRL',
      fields: {
        serial_number: { type: 'string', description: 'serial, colon- or hyphen-separated hex', max: 128 },
        certificate: { type: 'string', description: 'the PEM certificate', max: 16_384 },
      },
      auditPlain: PLAIN,
      operations: { update: revoke },
    },
    {
      pattern: 'cert/:serial', summary: 'a certificate this mount issued, with its revocation time; or the special ca, ca_chain, crl',
      auditPlain: PLAIN,
      operations: { read: readCert },
    },
    {
      pattern: 'certs/', summary: 'serials of the certificates this mount issued and recorded', auditPlain: PLAIN,
      operations: {
        list: async () => {
          const keys = (await store.listIssued()).map((hex) => formatSerial(Buffer.from(hex, 'hex')));
          return keys.length === 0 ? { status: 404, bare: { errors: [] } } : { data: { keys } };
        },
      },
    },

    // ── public: what relying parties fetch (Vault serves these without a token) ──
    {
      pattern: 'ca', summary: 'the issuing CA certificate (DER)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/pkix-cert', body: identity.ca.activeIssuer().certDer } }) },
    },
    {
      pattern: 'ca/pem', summary: 'the issuing CA certificate (PEM)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/pem-certificate-chain', body: toPem(identity.ca.activeIssuer().certDer) } }) },
    },
    {
      pattern: 'ca_chain', summary: 'the issuing CA certificate and its parents up to the roots (PEM)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/pem-certificate-chain', body: caChain(identity.ca.activeIssuer(), true).join('') } }) },
    },
    {
      pattern: 'crl', summary: 'the issuing CA’s certificate revocation list (DER)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/pkix-crl', body: (await identity.crlsDer())[0]! } }) },
    },
    {
      pattern: 'crl/pem', summary: 'the issuing CA’s certificate revocation list (PEM)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/x-pem-file', body: toPem((await identity.crlsDer())[0]!, 'X509 CRL') } }) },
    },
  ];
}

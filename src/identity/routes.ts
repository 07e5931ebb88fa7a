import { BadRequestError, PermissionDeniedError } from '../core/errors.js';
import type { FieldSpecs } from '../core/fields.js';
import type { AuthResult, HandlerContext, Request, Response, Route } from '../core/request.js';
import { toPem } from './pem.js';
import type { IdentityService, SvidResult } from './service.js';

// Certificates, serials and SPIFFE IDs are public: audit logs them in clear. Tokens and JWTs never are.
const PLAIN = ['spiffe_id', 'certificate', 'ca_chain', 'bundle', 'serial_number', 'expiration', 'csr', 'ttl', 'audience', 'namespace', 'service',
  'attestor', 'index', 'wait', 'serials', 'spiffe_ids', 'revocation_time', 'trust_domain', 'key_type', 'roots', 'intermediates', 'issuer'];

const CSR_FIELDS: FieldSpecs = {
  // No `max` here: parseCsr refuses more than 16 KiB itself, inside the handler, so an oversized CSR sent for
  // attestation is an attestation failure (a security event) like any other bad CSR.
  csr: { type: 'string', description: 'PEM PKCS#10 request made with the workload’s own key (EC P-256 or P-384), at most 16 KiB' },
  ttl: { type: 'duration', description: 'certificate lifetime, 5m … 24h (default 1h)' },
};

function svidData(r: SvidResult): Record<string, unknown> {
  return { ...r };
}

/** The attested identity of the caller, or a refusal: SVIDs are only ever issued for it. */
function attestedId(ctx: HandlerContext): string {
  const id = ctx.caller?.entityId ?? '';
  if (!id.startsWith('spiffe://')) {
    throw new PermissionDeniedError('permission denied: this caller has no attested workload identity; attest first (identity/attest/join-token or identity/attest/jwt) or present your X.509-SVID over mutual TLS');
  }
  return id;
}

function clientIp(req: Request): string {
  return req.client.address;
}

/** Mints the short-lived workload token an attestation returns (policy `workload`, entity = the SPIFFE ID). */
export type WorkloadTokenIssuer = (spiffeId: string, ttlSeconds: number, path: string) => Promise<AuthResult>;

export function identityRoutes(id: IdentityService, issueToken: WorkloadTokenIssuer): Route[] {
  /** Runs one attestation: every outcome is a security event (and, through the pipeline, an audit entry). */
  async function attest(
    ctx: HandlerContext, type: string, subject: string | undefined, run: (check: (spiffeId: string) => void) => Promise<string>, extra: () => Record<string, string> = () => ({}),
  ): Promise<Response> {
    // What the SVID request brings is checked before a single-use credential is spent on it; a refusal from then
    // on names the identity the credential was for.
    let claimed = subject;
    const check = (spiffeId: string) => {
      claimed = spiffeId;
      if (ctx.fields.csr !== undefined) id.checkSvidRequest(spiffeId, ctx.fields.csr, ctx.fields.ttl as number | undefined);
    };
    let spiffeId: string;
    try {
      // The workload token lives as long as the SVID would: the same bounds, with or without a CSR.
      id.checkSvidTtl(ctx.fields.ttl as number | undefined);
      spiffeId = await run(check);
    } catch (err) {
      await id.event({ type, outcome: 'failure', subject: claimed, client_ip: clientIp(ctx.req), reason: (err as Error).message });
      throw err;
    }
    let svid: SvidResult | null = null;
    try {
      if (ctx.fields.csr !== undefined) svid = await id.issueSvid(spiffeId, ctx.fields.csr, ctx.fields.ttl as number | undefined);
    } catch (err) {
      await id.event({ type, outcome: 'failure', subject: spiffeId, client_ip: clientIp(ctx.req), reason: (err as Error).message });
      throw err;
    }
    await id.event({ type, outcome: 'success', subject: spiffeId, client_ip: clientIp(ctx.req), details: { ...extra(), ...(svid ? { serial_number: svid.serial_number } : {}) } });
    const ttl = svid ? svid.expiration - Math.floor(Date.now() / 1000) : id.checkSvidTtl(ctx.fields.ttl as number | undefined);
    const auth = await issueToken(spiffeId, ttl, `${ctx.mountPath}${ctx.relPath}`);
    return { data: svid ? svidData(svid) : { spiffe_id: spiffeId }, auth };
  }

  return [
    // ── public: trust material that outside tools fetch ──
    {
      pattern: 'bundle', summary: 'the trust bundle: root CA certificates (PEM)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/x-pem-file', body: id.ca.bundlePem() } }) },
    },
    {
      pattern: 'bundle/spiffe', summary: 'the SPIFFE bundle (JWKS with x509-svid and jwt-svid keys)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/json', body: JSON.stringify(id.spiffeBundle()) } }) },
    },
    {
      pattern: 'jwks', summary: 'JWT-SVID verification keys (JWKS)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/jwk-set+json', body: JSON.stringify(id.jwks()) } }) },
    },
    {
      pattern: '.well-known/openid-configuration', summary: 'OIDC discovery for JWT-SVIDs', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/json', body: JSON.stringify(id.openidConfiguration()) } }) },
    },
    {
      pattern: 'crl', summary: 'the certificate revocation list of the active intermediate (DER)', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/pkix-crl', body: (await id.crlsDer())[0]! } }) },
    },
    {
      pattern: 'crl/pem', summary: 'the CRLs of every live intermediate and root (PEM): what a verifier checking whole chains needs', login: true,
      operations: { read: async () => ({ raw: { contentType: 'application/x-pem-file', body: (await id.crlsDer()).map((d) => toPem(d, 'X509 CRL')).join('') } }) },
    },

    // ── attestation: the request carries its own credential ──
    {
      pattern: 'attest/join-token', summary: 'attest with a single-use join token; returns an SVID (with csr) and a workload token', login: true,
      fields: {
        join_token: { type: 'string', description: 'the join token', required: true, max: 256 },
        namespace: { type: 'string', description: 'expected namespace (refused if the token is bound elsewhere)', max: 63 },
        service: { type: 'string', description: 'expected service (refused if the token is bound elsewhere)', max: 63 },
        ...CSR_FIELDS,
      },
      auditPlain: PLAIN,
      operations: {
        update: (ctx) => attest(ctx, 'attest.join_token', undefined, (check) => id.attestJoinToken(ctx.fields.join_token as string, {
          namespace: ctx.fields.namespace as string | undefined, service: ctx.fields.service as string | undefined,
        }, check)),
      },
    },
    {
      pattern: 'attest/jwt', summary: 'attest with a JWT from a configured OIDC issuer; returns an SVID (with csr) and a workload token', login: true,
      fields: {
        attestor: { type: 'string', description: 'name of the configured JWT attestor', required: true, max: 128 },
        jwt: { type: 'string', description: 'the JWT (e.g. a Kubernetes service-account or CI job token)', required: true, max: 16_384 },
        ...CSR_FIELDS,
      },
      auditPlain: PLAIN,
      operations: {
        update: async (ctx) => {
          let claims: Record<string, unknown> = {};
          return attest(ctx, 'attest.jwt', ctx.fields.attestor as string, async () => {
            const r = await id.attestJwt(ctx.fields.attestor as string, ctx.fields.jwt as string);
            claims = r.claims;
            return r.spiffeId;
          }, () => ({ attestor: ctx.fields.attestor as string, sub: String(claims.sub ?? '') }));
        },
      },
    },

    // ── workloads (authenticated by SVID over mTLS, or by a workload token) ──
    {
      pattern: 'svid', summary: 'sign a CSR for the caller’s attested SPIFFE ID (renewal)', fields: CSR_FIELDS, auditPlain: PLAIN,
      operations: {
        update: async (ctx) => {
          const spiffeId = attestedId(ctx);
          const viaSvid = ctx.caller!.tokenHash.startsWith('svid:');
          try {
            const r = await id.issueSvid(spiffeId, ctx.fields.csr, ctx.fields.ttl as number | undefined);
            if (viaSvid) await id.event({ type: 'attest.svid', outcome: 'success', subject: spiffeId, client_ip: clientIp(ctx.req), details: { serial_number: r.serial_number } });
            return { data: svidData(r) };
          } catch (err) {
            if (viaSvid) await id.event({ type: 'attest.svid', outcome: 'failure', subject: spiffeId, client_ip: clientIp(ctx.req), reason: (err as Error).message });
            throw err;
          }
        },
      },
    },
    {
      pattern: 'jwt-svid', summary: 'a JWT-SVID for the caller’s attested SPIFFE ID',
      fields: {
        audience: { type: 'strings', description: 'who the token is for (one or more)', required: true, max: 16 },
        ttl: { type: 'duration', description: 'lifetime, 30s … 1h (default 5m)' },
      },
      auditPlain: ['audience', 'ttl', 'spiffe_id', 'expiration'],
      operations: {
        update: async (ctx) => {
          const spiffeId = attestedId(ctx);
          const r = await id.issueJwtSvid(spiffeId, ctx.fields.audience as string[], ctx.fields.ttl as number | undefined);
          return { data: { spiffe_id: spiffeId, token: r.token, expiration: Math.floor(r.expiresAt.getTime() / 1000) } };
        },
      },
    },
    {
      pattern: 'jwt-svid/validate', summary: 'validate a JWT-SVID for an audience',
      fields: {
        token: { type: 'string', description: 'the JWT-SVID', required: true, max: 16_384 },
        audience: { type: 'string', description: 'the audience the validator is', required: true, max: 2048 },
      },
      auditPlain: ['audience', 'spiffe_id'],
      operations: {
        update: async (ctx) => {
          const r = await id.validateJwtSvid(ctx.fields.token as string, ctx.fields.audience as string);
          return { data: { spiffe_id: r.spiffeId, claims: r.claims } };
        },
      },
    },

    // ── operators ──
    {
      pattern: 'join-token', summary: 'create a single-use join token bound to one workload identity',
      fields: {
        namespace: { type: 'string', description: 'namespace of the workload', default: 'default', max: 63 },
        service: { type: 'string', description: 'service name of the workload', required: true, max: 63 },
        ttl: { type: 'duration', description: 'how long the token may be used (default 10m, at most 24h)' },
      },
      auditPlain: ['namespace', 'service', 'ttl', 'spiffe_id', 'expiration'],
      operations: {
        update: async (ctx) => {
          const ttl = (ctx.fields.ttl as number | undefined) || 600;
          if (ttl > 24 * 3600) throw new BadRequestError('ttl: a join token may live at most 24h');
          const spiffeId = id.workloadId(ctx.fields.namespace as string, ctx.fields.service as string);
          const t = await id.joinTokens.create(spiffeId, ttl);
          return { data: { token: t.token, spiffe_id: t.spiffeId, expiration: Math.floor(t.expiresAt.getTime() / 1000) } };
        },
      },
    },
    {
      pattern: 'revoke', summary: 'revoke one certificate (serial_number) or every certificate of a SPIFFE ID (spiffe_id)',
      fields: {
        serial_number: { type: 'string', description: 'serial of the certificate, as issued (3a:0f:…)', max: 128 },
        spiffe_id: { type: 'string', description: 'a SPIFFE ID of this trust domain', max: 2048 },
      },
      auditPlain: PLAIN,
      operations: {
        update: async (ctx) => {
          const { serial_number: serial, spiffe_id: spiffeId } = ctx.fields as { serial_number?: string; spiffe_id?: string };
          if (!serial === !spiffeId) throw new BadRequestError('give exactly one of serial_number or spiffe_id');
          if (serial) return { data: await id.revokeSerial(serial) };
          const r = await id.revokeId(spiffeId!);
          return { data: { spiffe_id: r.spiffe_id, revoked_certificates: r.serials } };
        },
      },
    },
    {
      pattern: 'restore', summary: 'allow a revoked SPIFFE ID to be issued SVIDs again (its old certificates stay revoked)',
      fields: { spiffe_id: { type: 'string', description: 'the revoked SPIFFE ID', required: true, max: 2048 } },
      auditPlain: PLAIN, sudo: true,
      operations: {
        update: async (ctx) => {
          if (!(await id.revocations.restoreId(ctx.fields.spiffe_id as string))) throw new BadRequestError(`${ctx.fields.spiffe_id as string} is not revoked`);
          return { data: { spiffe_id: ctx.fields.spiffe_id } };
        },
      },
    },
    {
      pattern: 'revocations', summary: 'the revocation list; ?index=N&wait=30s blocks until it changes past N',
      fields: {
        index: { type: 'int', description: 'answer when the list’s index passes this one', min: 0 },
        wait: { type: 'duration', description: 'longest wait for a change (default 5m, at most 10m)' },
      },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const index = ctx.fields.index as number | undefined;
          if (index !== undefined) await id.revocations.waitPast(index, Math.min((ctx.fields.wait as number | undefined) ?? 300, 600) * 1000);
          const view = id.revocations.view();
          return { data: { ...view }, headers: { 'X-Aegis-Index': String(view.index) } };
        },
      },
    },
    {
      pattern: 'certs/:serial', summary: 'one issued certificate by serial',
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const rec = await id.records.get(ctx.params.serial!);
          if (!rec) return { status: 404, data: null };
          return { data: { ...rec } };
        },
      },
    },
    {
      pattern: 'ca', summary: 'the CA: trust domain, roots and intermediates', auditPlain: PLAIN,
      operations: { read: async () => ({ data: { ...id.ca.status() } }) },
    },
    {
      pattern: 'ca/rotate-intermediate', summary: 'a new intermediate from the current root (old leaves stay valid)', sudo: true, auditPlain: PLAIN,
      operations: { update: async () => ({ data: { ...(await id.ca.rotateIntermediate()) } }) },
    },
    {
      pattern: 'ca/rotate-root', summary: 'a new root, cross-signed by the current one, and a new intermediate', sudo: true, auditPlain: PLAIN,
      operations: { update: async () => ({ data: { ...(await id.ca.rotateRoot()) } }) },
    },
    {
      pattern: 'attestors/jwt/', summary: 'configured JWT attestors',
      operations: { list: async () => ({ data: { keys: await id.listAttestors() } }) },
    },
    {
      pattern: 'attestors/jwt/:name', summary: 'a JWT attestor: an OIDC issuer and the rules that map its claims to identities',
      openFields: true, auditPlain: ['issuer', 'discovery_url', 'audiences', 'algorithms', 'rules', 'name', 'jwks'],
      operations: {
        read: async (ctx) => ({ data: { ...(await id.readAttestor(ctx.params.name!)) } }),
        update: async (ctx) => ({ data: { ...(await id.writeAttestor(ctx.params.name!, ctx.req.data)) } }),
        delete: async (ctx) => { await id.deleteAttestor(ctx.params.name!); },
      },
    },
  ];
}

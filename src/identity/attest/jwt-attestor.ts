// Attests a workload by a JWT from an outside OIDC issuer (Kubernetes service-account tokens, CI job tokens such as
// GitHub Actions'). jose verifies the token and keeps the issuer's JWKS (caching, kid rotation, refetch cooldown); this
// module validates the configuration, discovers the JWKS, bounds every fetch, and maps claims to an identity by rules.
import {
  createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, errors, jwtVerify,
  type FetchImplementation, type JWK, type JWTVerifyGetKey, type RemoteJWKSet,
} from 'jose';
import { BadRequestError } from '../../core/errors.js';

export interface JwtIssuerRule {
  /** Claim name → expected value; a value ending in `*` matches any string claim with that prefix. */
  match: Record<string, string>;
  /** May reference top-level string claims as `{{claim}}`; the result must be a segment (see SEGMENT). */
  namespace: string;
  service: string;
}

export interface JwtIssuerConfig {
  name: string;
  /** Expected `iss`, exact match. */
  issuer: string;
  /** OIDC discovery document; `<issuer>/.well-known/openid-configuration` when absent and `jwks` is not given. */
  discoveryUrl?: string;
  /** A static JWKS instead of discovery (public keys only). */
  jwks?: { keys: JWK[] };
  /** The token's aud must contain one of these. */
  audiences: string[];
  /** Signature algorithms accepted; asymmetric only. Default RS256, ES256. */
  algorithms: string[];
  /** First rule whose `match` holds decides the identity; no match is a refusal. */
  rules: JwtIssuerRule[];
}

export interface JwtAttestorOptions {
  fetch?: typeof fetch;
  /** How long the discovery document and the JWKS are cached; 600 s by default. */
  cacheSeconds?: number;
  /** After a JWKS fetch, an unknown kid triggers no refetch for this long (30 s by default), so a flood of made-up
   *  kids cannot hammer the issuer; a rotated-in key is therefore picked up at most this long after the last fetch. */
  jwksCooldownSeconds?: number;
}

export interface JwtAttestation {
  namespace: string;
  service: string;
  claims: Record<string, unknown>;
}

const DEFAULT_ALGORITHMS = ['RS256', 'ES256'];
const ASYMMETRIC_ALGORITHMS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']);
const CONFIG_FIELDS = ['name', 'issuer', 'discoveryUrl', 'jwks', 'audiences', 'algorithms', 'rules'];
const PRIVATE_JWK_FIELDS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const CLOCK_TOLERANCE_SECONDS = 60;
const FETCH_TIMEOUT_MS = 5000;
const DISCOVERY_RETRY_MS = 5000;
const MAX_DISCOVERY_BYTES = 64 * 1024;
const MAX_JWKS_BYTES = 256 * 1024;
const MAX_TOKEN_LENGTH = 16 * 1024;
const CLAIM_NAME = /^[A-Za-z0-9_.:-]{1,128}$/;
const TEMPLATE = /\{\{([^{}]*)\}\}/g;
// Namespaces and services become SPIFFE ID path segments: lowercase, DNS-label-like, and never '.' or '..'.
const SEGMENT = /^[a-z0-9._-]{1,63}$/;

const bad = (message: string) => new BadRequestError(message);

/** Checks a configuration (from a file, the API or code) and fills in defaults; throws with what is wrong. */
export function validateIssuerConfig(raw: unknown): JwtIssuerConfig {
  const c = record(raw, 'jwt issuer config');
  onlyFields(c, CONFIG_FIELDS, 'jwt issuer config');
  const name = text(c.name, 'jwt issuer config: name');
  const where = `jwt issuer ${JSON.stringify(name)}`;
  const issuer = text(c.issuer, `${where}: issuer`);
  if (c.discoveryUrl !== undefined && c.jwks !== undefined) throw bad(`${where}: give either discoveryUrl or jwks, not both`);
  const discoveryUrl = c.discoveryUrl === undefined ? undefined : fetchableUrl(c.discoveryUrl, `${where}: discoveryUrl`);
  const jwks = c.jwks === undefined ? undefined : publicJwks(c.jwks, `${where}: jwks`);
  if (discoveryUrl === undefined && jwks === undefined) {
    fetchableUrl(issuer, `${where}: issuer (used for OIDC discovery since neither discoveryUrl nor jwks is given)`);
  }
  const audiences = texts(c.audiences, `${where}: audiences`);
  const algorithms = c.algorithms === undefined ? [...DEFAULT_ALGORITHMS] : [...new Set(texts(c.algorithms, `${where}: algorithms`))];
  for (const alg of algorithms) {
    if (alg.toLowerCase() === 'none') throw bad(`${where}: algorithm none is refused: unsigned tokens prove nothing`);
    if (alg.startsWith('HS')) throw bad(`${where}: algorithm ${alg} is refused: HMAC would make the issuer's verification key a shared secret`);
    if (!ASYMMETRIC_ALGORITHMS.has(alg)) throw bad(`${where}: unsupported algorithm ${alg} (supported: ${[...ASYMMETRIC_ALGORITHMS].join(', ')})`);
  }
  if (!Array.isArray(c.rules) || c.rules.length === 0) throw bad(`${where}: rules must be a non-empty list`);
  const rules = c.rules.map((r, i) => checkRule(r, `${where}: rules[${i}]`));
  return { name, issuer, ...(discoveryUrl ? { discoveryUrl } : {}), ...(jwks ? { jwks } : {}), audiences, algorithms, rules };
}

export class JwtAttestor {
  readonly #cfg: JwtIssuerConfig;
  readonly #fetch: typeof fetch;
  readonly #cacheMs: number;
  readonly #cooldownMs: number;
  readonly #static: JWTVerifyGetKey | undefined;
  #discovered: { jwksUri: string; keys: RemoteJWKSet; at: number } | undefined;
  #discovering: Promise<RemoteJWKSet> | undefined;
  #discoveryFailure: { at: number; error: unknown } | undefined;

  constructor(cfg: JwtIssuerConfig, opts: JwtAttestorOptions = {}) {
    this.#cfg = validateIssuerConfig(cfg);
    this.#fetch = opts.fetch ?? fetch;
    this.#cacheMs = seconds(opts.cacheSeconds, 600, 'cacheSeconds') * 1000;
    this.#cooldownMs = seconds(opts.jwksCooldownSeconds, 30, 'jwksCooldownSeconds') * 1000;
    this.#static = this.#cfg.jwks ? createLocalJWKSet(this.#cfg.jwks) : undefined;
  }

  /** Verifies `jwt` from this issuer and maps its claims to a namespace and service; refuses with the reason. */
  async attest(jwt: string, now: Date = new Date()): Promise<JwtAttestation> {
    const cfg = this.#cfg;
    if (typeof jwt !== 'string' || jwt === '' || jwt.length > MAX_TOKEN_LENGTH) throw this.#refuse('malformed token: empty or longer than 16 KiB');
    // Checked before anything else, so an unsigned or HMAC token is named as such and never reaches key lookup.
    let header: { alg?: unknown; kid?: unknown };
    try {
      header = decodeProtectedHeader(jwt);
    } catch {
      throw this.#refuse('malformed token: the protected header does not decode');
    }
    if (typeof header.alg !== 'string') throw this.#refuse('malformed token: no alg header');
    if (header.alg.toLowerCase() === 'none') throw this.#refuse('algorithm none is not allowed');
    if (!cfg.algorithms.includes(header.alg)) throw this.#refuse(`algorithm ${header.alg} not allowed (allowed: ${cfg.algorithms.join(', ')})`);
    // An unverified look at iss only ever refuses early (and spares the issuer's JWKS a fetch); jwtVerify rechecks it.
    let iss: unknown;
    try {
      iss = decodeJwt(jwt).iss;
    } catch {
      throw this.#refuse('malformed token: the payload does not decode');
    }
    if (iss !== cfg.issuer) throw this.#refuse(`wrong issuer ${JSON.stringify(iss)}: expected ${JSON.stringify(cfg.issuer)}`);

    const keys = this.#static ?? (await this.#remoteKeys());
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(jwt, keys, {
        algorithms: cfg.algorithms,
        issuer: cfg.issuer,
        audience: cfg.audiences,
        requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        currentDate: now,
      }));
    } catch (err) {
      throw this.#refuse(verifyFailure(err, header.kid, cfg.audiences));
    }
    if (typeof claims.iat === 'number' && claims.iat > Math.floor(now.getTime() / 1000) + CLOCK_TOLERANCE_SECONDS) {
      throw this.#refuse(`token not yet valid: issued in the future (iat beyond ${CLOCK_TOLERANCE_SECONDS} s clock tolerance)`);
    }
    return { ...this.#identity(claims), claims };
  }

  #identity(claims: Record<string, unknown>): { namespace: string; service: string } {
    for (const [i, rule] of this.#cfg.rules.entries()) {
      const matches = Object.entries(rule.match).every(([name, expected]) => {
        const value = Object.hasOwn(claims, name) ? claims[name] : undefined;
        if (typeof value !== 'string') return false;
        return expected.endsWith('*') ? value.startsWith(expected.slice(0, -1)) : value === expected;
      });
      // First match decides; a rule that matches but cannot render is refused rather than skipped, so a later,
      // possibly broader rule never hands out an identity the operator did not mean for this token.
      if (matches) return { namespace: this.#render(rule.namespace, claims, `rules[${i}].namespace`), service: this.#render(rule.service, claims, `rules[${i}].service`) };
    }
    throw this.#refuse('no rule matched the token claims');
  }

  #render(template: string, claims: Record<string, unknown>, where: string): string {
    const out = template.replace(TEMPLATE, (_, name: string) => {
      const value = Object.hasOwn(claims, name) ? claims[name] : undefined;
      if (typeof value !== 'string') throw this.#refuse(`${where}: claim ${name} is missing or not a string`);
      return value;
    });
    if (!SEGMENT.test(out) || out === '.' || out === '..') {
      throw this.#refuse(`${where} gave ${JSON.stringify(out.slice(0, 80))}, not a valid segment (1-63 of a-z 0-9 . - _)`);
    }
    return out;
  }

  /** The JWKS behind the discovered jwks_uri. Discovery is cached and shared by concurrent callers; after a failure it
   *  is not retried for DISCOVERY_RETRY_MS (each unauthenticated attest must not become an outbound request), and a
   *  failed refresh keeps the last good jwks_uri (jose still refreshes the keys behind it). */
  async #remoteKeys(): Promise<RemoteJWKSet> {
    const d = this.#discovered;
    if (d && Date.now() - d.at < this.#cacheMs) return d.keys;
    const failed = this.#discoveryFailure;
    if (failed && Date.now() - failed.at < DISCOVERY_RETRY_MS) {
      if (d) return d.keys;
      throw failed.error;
    }
    this.#discovering ??= this.#discover()
      .then((keys) => {
        this.#discoveryFailure = undefined;
        return keys;
      }, (error: unknown) => {
        this.#discoveryFailure = { at: Date.now(), error };
        if (d) return d.keys;
        throw error;
      })
      .finally(() => { this.#discovering = undefined; });
    return this.#discovering;
  }

  async #discover(): Promise<RemoteJWKSet> {
    const cfg = this.#cfg;
    const url = cfg.discoveryUrl ?? `${cfg.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    let doc: unknown;
    try {
      const res = await this.#fetch(url, { method: 'GET', redirect: 'error', headers: { accept: 'application/json' }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      doc = JSON.parse(await readBounded(res, MAX_DISCOVERY_BYTES));
    } catch (err) {
      const why = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s` : err instanceof Error ? err.message : String(err);
      throw this.#refuse(`OIDC discovery at ${url} failed: ${why}`);
    }
    const meta = doc !== null && typeof doc === 'object' && !Array.isArray(doc) ? (doc as Record<string, unknown>) : {};
    // OpenID Connect Discovery §4.3: the document's issuer MUST equal the issuer it was fetched for.
    if (meta.issuer !== cfg.issuer) {
      throw this.#refuse(`OIDC discovery at ${url} names issuer ${JSON.stringify(meta.issuer)}, not the configured ${JSON.stringify(cfg.issuer)}`);
    }
    let jwksUri: string;
    try {
      jwksUri = fetchableUrl(meta.jwks_uri, 'jwks_uri');
    } catch (err) {
      throw this.#refuse(`OIDC discovery at ${url}: ${(err as Error).message}`);
    }
    const prev = this.#discovered;
    const keys = prev?.jwksUri === jwksUri ? prev.keys : createRemoteJWKSet(new URL(jwksUri), {
      timeoutDuration: FETCH_TIMEOUT_MS,
      cooldownDuration: this.#cooldownMs,
      cacheMaxAge: this.#cacheMs,
      [customFetch]: this.#jwksFetch,
    });
    this.#discovered = { jwksUri, keys, at: Date.now() };
    return keys;
  }

  /** jose's JWKS fetch, with the body size-bounded and failures tagged so they are reported as fetch failures. */
  readonly #jwksFetch: FetchImplementation = async (url, init) => {
    let res: Response;
    try {
      res = await this.#fetch(url, init);
    } catch (err) {
      if (err instanceof Error && err.name === 'TimeoutError') throw err; // jose turns this into JWKSTimeout
      throw new JwksFetchError(err instanceof Error ? err.message : String(err));
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new JwksFetchError(`HTTP ${res.status}`);
    }
    const body = await readBounded(res, MAX_JWKS_BYTES).catch((err: unknown) => {
      if (err instanceof Error && err.name === 'TimeoutError') throw err;
      throw new JwksFetchError(err instanceof Error ? err.message : String(err));
    });
    return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
  };

  #refuse(reason: string): BadRequestError {
    return bad(`jwt issuer ${JSON.stringify(this.#cfg.name)}: ${reason}`);
  }
}

class JwksFetchError extends Error {}

function verifyFailure(err: unknown, kid: unknown, audiences: string[]): string {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'exp' && err.reason === 'missing') return 'token has no exp claim: tokens that never expire are refused';
    if (err.claim === 'iss') return 'wrong issuer';
    if (err.claim === 'aud') return `wrong audience: expected one of ${audiences.join(', ')}`;
    if (err.claim === 'nbf') return `token not yet valid (nbf more than ${CLOCK_TOLERANCE_SECONDS} s in the future)`;
    return `invalid ${err.claim} claim: ${err.message}`;
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return `unknown signing key: no key with kid ${JSON.stringify(kid)} in the issuer's JWKS`;
  if (err instanceof errors.JWKSMultipleMatchingKeys) return 'ambiguous signing key: several JWKS keys match the token header';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof errors.JWKSTimeout) return `the issuer's JWKS did not answer within ${FETCH_TIMEOUT_MS / 1000} s`;
  if (err instanceof errors.JWKSInvalid) return `the issuer's JWKS is malformed: ${err.message}`;
  if (err instanceof JwksFetchError) return `could not fetch the issuer's JWKS: ${err.message}`;
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return `malformed token: ${err.message}`;
  if (err instanceof errors.JOSEError) return `token or issuer key refused: ${err.message}`;
  // jose throws TypeError when a key does not fit the token's algorithm (e.g. a P-384 key for ES256).
  if (err instanceof TypeError) return `signing key does not fit the token's algorithm: ${err.message}`;
  return 'token validation failed';
}

async function readBounded(res: Response, limit: number): Promise<string> {
  if (Number(res.headers.get('content-length') ?? 0) > limit) {
    await res.body?.cancel();
    throw new Error(`response larger than ${limit} bytes`);
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  // Bounded by `limit` and by the request's abort signal.
  for (let size = 0; ;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new Error(`response larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function checkRule(raw: unknown, where: string): JwtIssuerRule {
  const r = record(raw, where);
  onlyFields(r, ['match', 'namespace', 'service'], where);
  const m = record(r.match, `${where}.match`);
  const entries = Object.entries(m);
  // An empty match would accept every token the issuer mints for the audience: for a CI issuer, any repository.
  if (entries.length === 0) throw bad(`${where}.match must name at least one claim`);
  const match: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!CLAIM_NAME.test(name)) throw bad(`${where}.match: invalid claim name ${JSON.stringify(name)}`);
    const expected = text(value, `${where}.match.${name}`);
    if (expected.slice(0, -1).includes('*')) throw bad(`${where}.match.${name}: '*' is only allowed at the end (a prefix wildcard)`);
    match[name] = expected;
  }
  return { match, namespace: checkTemplate(r.namespace, `${where}.namespace`), service: checkTemplate(r.service, `${where}.service`) };
}

function checkTemplate(raw: unknown, where: string): string {
  const template = text(raw, where);
  let placeholders = 0;
  const literal = template.replace(TEMPLATE, (_, name: string) => {
    if (!CLAIM_NAME.test(name)) throw bad(`${where}: invalid claim reference {{${name}}}`);
    placeholders++;
    return 'x';
  });
  if (literal.includes('{') || literal.includes('}')) throw bad(`${where}: unbalanced {{ }} in ${JSON.stringify(template)}`);
  const ok = placeholders > 0 ? /^[a-z0-9._-]+$/.test(literal) : SEGMENT.test(literal) && literal !== '.' && literal !== '..';
  if (!ok) throw bad(`${where}: ${JSON.stringify(template)} is not a valid segment (1-63 of a-z 0-9 . - _, or {{claim}} references)`);
  return template;
}

function publicJwks(raw: unknown, where: string): { keys: JWK[] } {
  const set = record(raw, where);
  if (!Array.isArray(set.keys) || set.keys.length === 0) throw bad(`${where}: keys must be a non-empty list`);
  for (const [i, key] of set.keys.entries()) {
    const k = record(key, `${where}.keys[${i}]`);
    if (typeof k.kty !== 'string') throw bad(`${where}.keys[${i}]: kty is required`);
    const secret = PRIVATE_JWK_FIELDS.filter((f) => f in k);
    if (secret.length > 0) throw bad(`${where}.keys[${i}]: private or symmetric key material (${secret.join(', ')}) does not belong in a verification JWKS`);
  }
  try {
    createLocalJWKSet(set as unknown as { keys: JWK[] });
  } catch (err) {
    throw bad(`${where}: ${(err as Error).message}`);
  }
  return structuredClone(set) as unknown as { keys: JWK[] };
}

/** https, or http to a loopback address (tests, a local issuer): key material is never fetched in the clear. */
function fetchableUrl(raw: unknown, where: string): string {
  const s = text(raw, where);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw bad(`${where}: ${JSON.stringify(s)} is not a URL`);
  }
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) throw bad(`${where}: ${s} must use https (http only to loopback)`);
  return url.href;
}

function record(raw: unknown, where: string): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(`${where} must be an object`);
  return raw as Record<string, unknown>;
}

function onlyFields(r: Record<string, unknown>, allowed: string[], where: string): void {
  const unknown = Object.keys(r).filter((k) => !allowed.includes(k));
  if (unknown.length > 0) throw bad(`${where}: unknown field ${unknown.join(', ')} (allowed: ${allowed.join(', ')})`);
}

function text(raw: unknown, where: string): string {
  if (typeof raw !== 'string' || raw === '') throw bad(`${where} must be a non-empty string`);
  return raw;
}

function texts(raw: unknown, where: string): string[] {
  if (!Array.isArray(raw) || raw.length === 0) throw bad(`${where} must be a non-empty list of strings`);
  return raw.map((v, i) => text(v, `${where}[${i}]`));
}

function seconds(raw: number | undefined, fallback: number, name: string): number {
  if (raw === undefined) return fallback;
  if (!Number.isFinite(raw) || raw < 0) throw bad(`${name} must be a non-negative number of seconds`);
  return raw;
}

// JWT-SVIDs per the SPIFFE JWT-SVID standard (standards/JWT-SVID.md). jose does the JOSE work; this module adds the
// restrictions the standard puts on top of plain JWTs and turns every refusal into a BadRequestError with a reason.
import type { KeyObject } from 'node:crypto';
import { createPublicKey } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors, jwtVerify, type JWK } from 'jose';
import { BadRequestError } from '../core/errors.js';
import { parseSpiffeId, validateTrustDomain } from './spiffe-id.js';

export interface JwtSigningKey {
  kid: string;
  /** EC P-256 private key: JWT-SVIDs are signed with ES256 only. */
  privateKey: KeyObject;
}

export interface JwtVerificationKey {
  kid: string;
  publicKey: KeyObject;
}

export interface SignJwtSvidInput {
  spiffeId: string;
  audience: string[];
  ttlSeconds: number;
  issuer?: string;
  now?: Date;
}

export interface ValidateJwtSvidInput {
  /** The audience this validator identifies with; it must be one of the token's `aud` values (§3.2). */
  audience: string;
  keys: JwtVerificationKey[];
  trustDomain: string;
  now?: Date;
  /** Leeway for `exp`/`nbf`, 0 to 300 seconds; 0 by default. */
  clockToleranceSeconds?: number;
}

// §2.1 allows the RS/ES/PS families; Aegis signs with ES256 and accepts the EC algorithms its own bundles can hold.
// HS* and `none` are never on this list.
const VALIDATION_ALGORITHMS = ['ES256', 'ES384'];
// §2: any header not described in the standard MUST NOT be included.
const ALLOWED_HEADERS = new Set(['alg', 'kid', 'typ']);
const CURVES: Record<string, { crv: string; alg: string }> = {
  prime256v1: { crv: 'P-256', alg: 'ES256' },
  secp384r1: { crv: 'P-384', alg: 'ES384' },
};
const MAX_TOKEN_LENGTH = 16 * 1024;
const MAX_CLOCK_TOLERANCE = 300;

/** Issues a JWT-SVID for `spiffeId`, signed ES256 with `key` (the `kid` header is always set). */
export async function signJwtSvid(key: JwtSigningKey, input: SignJwtSvidInput): Promise<{ token: string; expiresAt: Date }> {
  if (typeof key.kid !== 'string' || key.kid === '') throw new BadRequestError('JWT-SVID signing key needs a non-empty kid');
  const details = key.privateKey.asymmetricKeyDetails;
  if (key.privateKey.type !== 'private' || key.privateKey.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1') {
    throw new BadRequestError('JWT-SVID signing key must be an EC P-256 private key (ES256)');
  }
  parseSpiffeId(input.spiffeId);
  // §3.2: aud MUST be present with one or more values.
  if (!Array.isArray(input.audience) || input.audience.length === 0 || input.audience.some((a) => typeof a !== 'string' || a === '')) {
    throw new BadRequestError('audience: one or more non-empty strings are required');
  }
  if (!Number.isInteger(input.ttlSeconds) || input.ttlSeconds <= 0) {
    throw new BadRequestError('ttlSeconds must be a positive whole number of seconds');
  }
  if (input.issuer !== undefined && (typeof input.issuer !== 'string' || input.issuer === '')) {
    throw new BadRequestError('issuer, when given, must be a non-empty string');
  }
  const iat = Math.floor((input.now ?? new Date()).getTime() / 1000);
  // §3.3: exp MUST be set.
  const exp = iat + input.ttlSeconds;
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
    .setSubject(input.spiffeId)
    .setAudience([...input.audience])
    .setIssuedAt(iat)
    .setExpirationTime(exp);
  if (input.issuer !== undefined) jwt.setIssuer(input.issuer);
  return { token: await jwt.sign(key.privateKey), expiresAt: new Date(exp * 1000) };
}

/** The public JWT half of a SPIFFE bundle: one JWK per key, `use: "jwt-svid"`, never a private field. */
export function jwtBundle(keys: JwtVerificationKey[]): { keys: JWK[] } {
  const out: JWK[] = [];
  const seen = new Set<string>();
  for (const { kid, publicKey } of keys) {
    if (typeof kid !== 'string' || kid === '') throw new BadRequestError('every JWT bundle key needs a non-empty kid');
    if (seen.has(kid)) throw new BadRequestError(`duplicate kid in JWT bundle: ${kid}`);
    seen.add(kid);
    // A private key handed in by mistake is reduced to its public half rather than exported.
    const pub = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey;
    const curve = CURVES[pub.asymmetricKeyDetails?.namedCurve ?? ''];
    if (pub.type !== 'public' || pub.asymmetricKeyType !== 'ec' || !curve) {
      throw new BadRequestError(`JWT bundle key ${kid} must be an EC P-256 or P-384 public key`);
    }
    const jwk = pub.export({ format: 'jwk' });
    // Only the public members are copied, by name.
    out.push({ kty: 'EC', crv: curve.crv, x: jwk.x, y: jwk.y, kid, use: 'jwt-svid' });
  }
  return { keys: out };
}

/** Validates a JWT-SVID presented to `audience`; returns its SPIFFE ID (which is in `trustDomain`) and claims. */
export async function validateJwtSvid(token: string, input: ValidateJwtSvidInput): Promise<{ spiffeId: string; claims: Record<string, unknown> }> {
  if (typeof input.audience !== 'string' || input.audience === '') throw new BadRequestError('validator audience must be a non-empty string');
  validateTrustDomain(input.trustDomain);
  const tolerance = input.clockToleranceSeconds ?? 0;
  if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > MAX_CLOCK_TOLERANCE) {
    throw new BadRequestError(`clockToleranceSeconds must be between 0 and ${MAX_CLOCK_TOLERANCE}`);
  }
  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw new BadRequestError('malformed JWT-SVID: not a string or too long');
  const header = checkHeader(token);
  const key = input.keys.find((k) => k.kid === header.kid);
  if (!key) throw new BadRequestError(`unknown kid ${JSON.stringify(header.kid)}: no key in the trust domain's JWT bundle has it`);

  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(token, key.publicKey, {
      algorithms: VALIDATION_ALGORITHMS,
      audience: input.audience,
      // §3.2, §3.3, §4: aud and exp MUST be present; §3.1: sub carries the identity.
      requiredClaims: ['aud', 'exp', 'sub'],
      clockTolerance: tolerance,
      ...(input.now ? { currentDate: input.now } : {}),
    }));
  } catch (err) {
    throw new BadRequestError(verifyFailure(err, input.audience));
  }
  if (typeof payload.exp !== 'number') throw new BadRequestError('JWT-SVID exp must be a number');
  if (typeof payload.sub !== 'string') throw new BadRequestError('JWT-SVID sub must be a SPIFFE ID string');
  const id = parseSpiffeId(payload.sub);
  if (id.trustDomain !== input.trustDomain) {
    throw new BadRequestError(`JWT-SVID subject ${payload.sub} is not in trust domain ${input.trustDomain}`);
  }
  return { spiffeId: payload.sub, claims: payload };
}

/** §2, §4: the header is checked before any key is looked up or signature computed. */
function checkHeader(token: string): { alg: string; kid: string } {
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    throw new BadRequestError('malformed JWT-SVID: the protected header does not decode');
  }
  if (token.split('.').length !== 3) throw new BadRequestError('malformed JWT-SVID: JWS compact serialization has three parts (§5.1)');
  const { alg, kid, typ } = header;
  if (typeof alg !== 'string') throw new BadRequestError('JWT-SVID header has no alg');
  if (alg.toLowerCase() === 'none') throw new BadRequestError('algorithm none is not allowed');
  if (!VALIDATION_ALGORITHMS.includes(alg)) {
    throw new BadRequestError(`algorithm ${alg} is not allowed for JWT-SVIDs (allowed: ${VALIDATION_ALGORITHMS.join(', ')})`);
  }
  if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') throw new BadRequestError(`JWT-SVID typ must be JWT or JOSE, not ${JSON.stringify(typ)}`);
  const extra = Object.keys(header).filter((name) => !ALLOWED_HEADERS.has(name));
  if (extra.length > 0) throw new BadRequestError(`JWT-SVID header must not carry ${extra.join(', ')} (only alg, kid, typ)`);
  // The standard makes kid optional, but keys are selected by kid; as in go-spiffe, a token without one is refused.
  if (typeof kid !== 'string' || kid === '') throw new BadRequestError('JWT-SVID header has no kid: cannot pick a bundle key');
  return { alg, kid };
}

function verifyFailure(err: unknown, audience: string): string {
  if (err instanceof errors.JWTExpired) return 'JWT-SVID expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return `JWT-SVID has no ${err.claim} claim`;
    if (err.claim === 'aud') return `audience mismatch: the token is not for ${JSON.stringify(audience)}`;
    if (err.claim === 'nbf') return 'JWT-SVID not yet valid (nbf is in the future)';
    return `JWT-SVID claim ${err.claim} is invalid: ${err.message}`;
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'JWT-SVID signature verification failed';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'JWT-SVID algorithm is not allowed';
  if (err instanceof errors.JWTInvalid || err instanceof errors.JWSInvalid) return `malformed JWT-SVID: ${err.message}`;
  // jose throws TypeError when the key does not fit the algorithm (e.g. an ES384 header on a P-256 key).
  if (err instanceof TypeError) return `JWT-SVID key does not fit its algorithm: ${err.message}`;
  return 'JWT-SVID validation failed';
}

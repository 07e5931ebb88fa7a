import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, base64url, decodeProtectedHeader } from 'jose';
import { BadRequestError } from '../../src/core/errors.js';
import { jwtBundle, signJwtSvid, validateJwtSvid, type JwtSigningKey } from '../../src/identity/jwt-svid.js';

const TD = 'example.org';
const ID = 'spiffe://example.org/ns/prod/sa/web';
const NOW = new Date('2030-01-01T00:00:00Z');
const NOW_S = Math.floor(NOW.getTime() / 1000);

function ecKey(kid: string, namedCurve = 'prime256v1'): JwtSigningKey & { publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
  return { kid, privateKey, publicKey };
}

const key = ecKey('k1');
const keys = [{ kid: key.kid, publicKey: key.publicKey }];

function validate(token: string, over: Partial<Parameters<typeof validateJwtSvid>[1]> = {}) {
  return validateJwtSvid(token, { audience: 'reports', keys, trustDomain: TD, now: NOW, ...over });
}

async function refused(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.match(err.message, reason);
    return true;
  });
}

/** Signs arbitrary claims and header with `k` through jose, for tokens signJwtSvid would never produce. */
function handSigned(claims: Record<string, unknown>, header: Record<string, unknown> = {}, k: KeyObject = key.privateKey) {
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT', ...header }).sign(k);
}

const good = { sub: ID, aud: ['reports'], iat: NOW_S, exp: NOW_S + 300 };

describe('signJwtSvid / validateJwtSvid', () => {
  it('round-trips: the SPIFFE ID, audience and expiry come back', async () => {
    const { token, expiresAt } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports'], ttlSeconds: 300, issuer: 'https://aegis.example.org', now: NOW });
    assert.equal(expiresAt.getTime(), NOW.getTime() + 300_000);
    const { spiffeId, claims } = await validate(token);
    assert.equal(spiffeId, ID);
    assert.deepEqual(claims.aud, ['reports']);
    assert.equal(claims.exp, NOW_S + 300);
    assert.equal(claims.iss, 'https://aegis.example.org');
  });

  it('JOSE header §2: alg ES256, kid set, typ JWT, nothing else', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    assert.deepEqual(decodeProtectedHeader(token), { alg: 'ES256', kid: 'k1', typ: 'JWT' });
  });

  it('a token for several audiences validates for each of them', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports', 'billing'], ttlSeconds: 60, now: NOW });
    assert.equal((await validate(token, { audience: 'billing' })).spiffeId, ID);
  });

  it('§3.2: a token for another audience is refused (no replay to a second service)', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['billing'], ttlSeconds: 60, now: NOW });
    await refused(validate(token), /audience mismatch/);
  });

  it('§3.3: an expired token is refused; leeway is only what the validator grants', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    const later = new Date(NOW.getTime() + 90_000);
    await refused(validate(token, { now: later }), /JWT-SVID expired/);
    assert.equal((await validate(token, { now: later, clockToleranceSeconds: 60 })).spiffeId, ID);
    await refused(validate(token, { clockToleranceSeconds: 3600 }), /clockToleranceSeconds/);
  });

  it('a SPIFFE ID from another trust domain is refused', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: 'spiffe://evil.org/ns/prod/sa/web', audience: ['reports'], ttlSeconds: 60, now: NOW });
    await refused(validate(token), /not in trust domain example\.org/);
  });

  it('a token signed by another key under the same kid fails the signature check', async () => {
    const impostor = ecKey('k1');
    const { token } = await signJwtSvid(impostor, { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    await refused(validate(token), /signature verification failed/);
  });

  it('a token whose kid is not in the bundle is refused', async () => {
    const { token } = await signJwtSvid(ecKey('k2'), { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    await refused(validate(token), /unknown kid "k2"/);
  });

  it('a tampered payload (another SPIFFE ID) fails the signature check', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    const [h, , s] = token.split('.');
    const forged = base64url.encode(JSON.stringify({ ...good, sub: 'spiffe://example.org/ns/prod/sa/admin' }));
    await refused(validate(`${h}.${forged}.${s}`), /signature verification failed/);
  });

  it('§2.1: alg none is refused before any key is looked at', async () => {
    const header = base64url.encode(JSON.stringify({ alg: 'none', kid: 'k1', typ: 'JWT' }));
    const payload = base64url.encode(JSON.stringify(good));
    await refused(validate(`${header}.${payload}.`), /algorithm none is not allowed/);
  });

  it('§2.1: HS256 signed with the public key as secret (key confusion) is refused', async () => {
    const secret = new TextEncoder().encode(key.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const token = await new SignJWT(good).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(secret);
    await refused(validate(token), /algorithm HS256 is not allowed/);
  });

  it('§3.3, §3.2: tokens without exp or without aud are refused', async () => {
    const { exp: _exp, ...noExp } = good;
    await refused(validate(await handSigned(noExp)), /no exp claim/);
    const { aud: _aud, ...noAud } = good;
    await refused(validate(await handSigned(noAud)), /no aud claim/);
    await refused(validate(await handSigned({ ...good, aud: [] })), /audience mismatch/);
  });

  it('§2.3: typ other than JWT or JOSE is refused; JOSE and absent typ are accepted', async () => {
    await refused(validate(await handSigned(good, { typ: 'at+jwt' })), /typ must be JWT or JOSE/);
    assert.equal((await validate(await handSigned(good, { typ: 'JOSE' }))).spiffeId, ID);
    assert.equal((await validate(await new SignJWT(good).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(key.privateKey))).spiffeId, ID);
  });

  it('§2: a header outside alg/kid/typ (a jku pointing at other keys) is refused', async () => {
    await refused(validate(await handSigned(good, { jku: 'https://evil.example/keys' })), /must not carry jku/);
  });

  it('a token without kid is refused (keys are chosen by kid)', async () => {
    const token = await new SignJWT(good).setProtectedHeader({ alg: 'ES256' }).sign(key.privateKey);
    await refused(validate(token), /no kid/);
  });

  it('§3.1: a sub that is not a SPIFFE ID is refused', async () => {
    await refused(validate(await handSigned({ ...good, sub: 'web' })), /invalid SPIFFE ID/);
    await refused(validate(await handSigned({ ...good, sub: 'spiffe://example.org/ns/../admin' })), /dot segments/);
  });

  it('garbage is refused as malformed', async () => {
    await refused(validate('not-a-jwt'), /malformed JWT-SVID/);
  });

  it('issuing refuses what would make a non-conforming SVID or a weak key', async () => {
    const base = { spiffeId: ID, audience: ['reports'], ttlSeconds: 60 };
    await refused(signJwtSvid(key, { ...base, audience: [] }), /audience/);
    await refused(signJwtSvid(key, { ...base, ttlSeconds: 0 }), /ttlSeconds/);
    await refused(signJwtSvid(key, { ...base, spiffeId: 'https://example.org/web' }), /invalid SPIFFE ID/);
    await refused(signJwtSvid({ ...key, kid: '' }, base), /kid/);
    await refused(signJwtSvid(ecKey('p384', 'secp384r1'), base), /P-256/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await refused(signJwtSvid({ kid: 'r', privateKey: rsa.privateKey }, base), /P-256/);
  });
});

describe('jwtBundle', () => {
  it('publishes public JWKs with use jwt-svid and no private member', () => {
    const other = ecKey('k2', 'secp384r1');
    const bundle = jwtBundle([{ kid: 'k1', publicKey: key.publicKey }, { kid: 'k2', publicKey: other.privateKey }]);
    assert.equal(bundle.keys.length, 2);
    for (const jwk of bundle.keys) {
      assert.equal(jwk.use, 'jwt-svid');
      assert.equal(jwk.kty, 'EC');
      assert.equal(jwk.d, undefined);
      assert.deepEqual(Object.keys(jwk).sort(), ['crv', 'kid', 'kty', 'use', 'x', 'y']);
    }
    assert.deepEqual(bundle.keys.map((k) => [k.kid, k.crv]), [['k1', 'P-256'], ['k2', 'P-384']]);
    assert.doesNotMatch(JSON.stringify(bundle), /"d"/);
  });

  it('a key taken from the bundle validates the SVIDs it signed', async () => {
    const { token } = await signJwtSvid(key, { spiffeId: ID, audience: ['reports'], ttlSeconds: 60, now: NOW });
    const [jwk] = jwtBundle(keys).keys;
    const publicKey = createPublicKey({ key: { kty: jwk!.kty, crv: jwk!.crv, x: jwk!.x, y: jwk!.y }, format: 'jwk' });
    assert.equal((await validate(token, { keys: [{ kid: 'k1', publicKey }] })).spiffeId, ID);
  });

  it('refuses duplicate kids and non-EC keys', () => {
    assert.throws(() => jwtBundle([...keys, ...keys]), /duplicate kid/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    assert.throws(() => jwtBundle([{ kid: 'r', publicKey: rsa.publicKey }]), /EC P-256 or P-384/);
  });
});

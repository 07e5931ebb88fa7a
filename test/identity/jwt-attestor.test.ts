import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, base64url, type JWK } from 'jose';
import { BadRequestError } from '../../src/core/errors.js';
import { JwtAttestor, validateIssuerConfig, type JwtAttestorOptions } from '../../src/identity/attest/jwt-attestor.js';
import { onCleanup } from '../helpers/cleanup.js';

interface IssuerKey { kid: string; alg: 'RS256' | 'ES256'; privateKey: KeyObject; jwk: JWK }

function issuerKey(kid: string, alg: 'RS256' | 'ES256'): IssuerKey {
  const { privateKey, publicKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { kid, alg, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } as JWK };
}

/** A real OIDC issuer on loopback: discovery, JWKS, and a few misbehaving discovery documents. */
interface OidcIssuer { url: string; keys: JWK[]; discoveryDown: boolean; hits: { discovery: number; jwks: number; wrong: number } }

async function startIssuer(): Promise<OidcIssuer> {
  const issuer: OidcIssuer = { url: '', keys: [], discoveryDown: false, hits: { discovery: 0, jwks: 0, wrong: 0 } };
  const server = createServer((req, res) => {
    const json = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    switch (req.url) {
      case '/.well-known/openid-configuration':
        issuer.hits.discovery++;
        if (issuer.discoveryDown) return res.writeHead(503).end();
        return json({ issuer: issuer.url, jwks_uri: `${issuer.url}/jwks`, response_types_supported: ['id_token'] });
      case '/jwks':
        issuer.hits.jwks++;
        return json({ keys: issuer.keys });
      case '/wrong/.well-known/openid-configuration':
        issuer.hits.wrong++;
        return json({ issuer: 'https://evil.example', jwks_uri: `${issuer.url}/jwks` });
      case '/cleartext/.well-known/openid-configuration':
        return json({ issuer: issuer.url, jwks_uri: 'http://keys.example.com/jwks' });
      case '/huge/.well-known/openid-configuration':
        return json({ issuer: issuer.url, jwks_uri: `${issuer.url}/jwks`, padding: 'x'.repeat(200 * 1024) });
      case '/hang/.well-known/openid-configuration':
        return; // never answers: the attestor's own timeout must end the wait
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  onCleanup(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return issuer;
}

const NOW = new Date();
const NOW_S = Math.floor(NOW.getTime() / 1000);
const RULES = [
  { match: { sub: 'system:serviceaccount:prod:web' }, namespace: 'prod', service: 'web' },
  { match: { repository: 'acme/*', ref: 'refs/heads/main' }, namespace: 'ci-{{repository_owner}}', service: '{{environment}}' },
  { match: { repository: 'other/*' }, namespace: 'ci', service: '{{repository}}' },
  { match: { repository: 'shouty/*' }, namespace: 'ci', service: '{{environment}}' },
];

let oidc: OidcIssuer;
let rsa: IssuerKey;
let ec: IssuerKey;

before(async () => {
  oidc = await startIssuer();
  rsa = issuerKey('rsa-1', 'RS256');
  ec = issuerKey('ec-1', 'ES256');
  oidc.keys.push(rsa.jwk, ec.jwk);
});

function attestor(over: Record<string, unknown> = {}, opts: JwtAttestorOptions = {}): JwtAttestor {
  return new JwtAttestor(validateIssuerConfig({ name: 'test', issuer: oidc.url, audiences: ['aegis'], rules: RULES, ...over }), opts);
}

const k8s = () => ({ iss: oidc.url, sub: 'system:serviceaccount:prod:web', aud: ['aegis'], iat: NOW_S, exp: NOW_S + 600 });
const ci = () => ({
  iss: oidc.url, sub: 'repo:acme/web:ref:refs/heads/main', aud: 'aegis', iat: NOW_S, exp: NOW_S + 600,
  repository: 'acme/web', repository_owner: 'acme', ref: 'refs/heads/main', environment: 'production',
});

function mint(claims: Record<string, unknown>, key: IssuerKey = rsa, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

async function refused(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.match(err.message, reason);
    return true;
  });
}

describe('JwtAttestor: identity from claims', () => {
  it('a Kubernetes service-account token (RS256) maps by its sub', async () => {
    const r = await attestor().attest(await mint(k8s()), NOW);
    assert.deepEqual([r.namespace, r.service], ['prod', 'web']);
    assert.equal(r.claims.sub, 'system:serviceaccount:prod:web');
  });

  it('a CI token (ES256) maps by a wildcard repository rule and {{claim}} templates', async () => {
    const r = await attestor().attest(await mint(ci(), ec), NOW);
    assert.deepEqual([r.namespace, r.service], ['ci-acme', 'production']);
  });

  it('a CI token from another branch matches no rule and is refused', async () => {
    await refused(attestor().attest(await mint({ ...ci(), ref: 'refs/heads/dev' }), NOW), /no rule matched/);
    await refused(attestor().attest(await mint({ ...ci(), repository: 'acme-evil/web' }), NOW), /no rule matched/);
  });

  it('a template that yields an invalid segment is refused, not sanitised', async () => {
    await refused(attestor().attest(await mint({ ...ci(), repository: 'other/web' }), NOW), /rules\[2\]\.service gave "other\/web", not a valid segment/);
    await refused(attestor().attest(await mint({ ...ci(), repository: 'shouty/web', environment: 'PROD' }), NOW), /not a valid segment/);
    const { environment: _e, ...noEnv } = ci();
    await refused(attestor().attest(await mint(noEnv), NOW), /claim environment is missing/);
  });
});

describe('JwtAttestor: token checks', () => {
  it('alg none is refused before discovery or any key fetch', async () => {
    const before = { ...oidc.hits };
    const token = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${base64url.encode(JSON.stringify(k8s()))}.`;
    await refused(attestor().attest(token, NOW), /algorithm none is not allowed/);
    assert.deepEqual(oidc.hits, before);
  });

  it('HS256 signed with the issuer public key as secret (key confusion) is refused', async () => {
    const secret = new TextEncoder().encode(JSON.stringify(rsa.jwk));
    const token = await new SignJWT(k8s()).setProtectedHeader({ alg: 'HS256', kid: rsa.kid }).sign(secret);
    await refused(attestor().attest(token, NOW), /algorithm HS256 not allowed/);
  });

  it('an algorithm outside the configured allow-list is refused', async () => {
    await refused(attestor({ algorithms: ['RS256'] }).attest(await mint(ci(), ec), NOW), /algorithm ES256 not allowed/);
  });

  it('a token from another issuer is refused', async () => {
    await refused(attestor().attest(await mint({ ...k8s(), iss: 'https://other.example' }), NOW), /wrong issuer "https:\/\/other\.example"/);
  });

  it('a token for another audience is refused', async () => {
    await refused(attestor().attest(await mint({ ...k8s(), aud: ['vault'] }), NOW), /wrong audience/);
  });

  it('an expired token is refused; one expired within the 60 s tolerance is accepted', async () => {
    await refused(attestor().attest(await mint({ ...k8s(), exp: NOW_S - 120 }), NOW), /token expired/);
    assert.equal((await attestor().attest(await mint({ ...k8s(), exp: NOW_S - 30 }), NOW)).service, 'web');
  });

  it('a token without exp is refused', async () => {
    const { exp: _exp, ...claims } = k8s();
    await refused(attestor().attest(await mint(claims), NOW), /no exp claim/);
  });

  it('nbf beyond the 60 s tolerance is refused; within it accepted', async () => {
    await refused(attestor().attest(await mint({ ...k8s(), nbf: NOW_S + 120 }), NOW), /not yet valid/);
    assert.equal((await attestor().attest(await mint({ ...k8s(), nbf: NOW_S + 30 }), NOW)).service, 'web');
  });

  it('iat beyond the 60 s tolerance is refused', async () => {
    await refused(attestor().attest(await mint({ ...k8s(), iat: NOW_S + 600 }), NOW), /issued in the future/);
  });

  it('a token signed by a key the issuer never published is refused', async () => {
    await refused(attestor().attest(await mint(k8s(), issuerKey('ghost', 'RS256')), NOW), /unknown signing key: no key with kid "ghost"/);
  });

  it('a tampered payload (another service account) fails the signature check', async () => {
    const [h, , s] = (await mint(k8s())).split('.');
    const forged = base64url.encode(JSON.stringify({ ...k8s(), sub: 'system:serviceaccount:kube-system:admin' }));
    await refused(attestor().attest(`${h}.${forged}.${s}`, NOW), /signature verification failed/);
  });

  it('garbage is refused as malformed', async () => {
    await refused(attestor().attest('a.b.c', NOW), /malformed token/);
    await refused(attestor().attest('x'.repeat(20_000), NOW), /malformed token/);
  });
});

describe('JwtAttestor: discovery and keys', () => {
  it('discovery is fetched once and shared, also by concurrent callers', async () => {
    const a = attestor();
    const before = oidc.hits.discovery;
    const tokens = await Promise.all([1, 2, 3, 4, 5].map(() => mint(k8s())));
    await Promise.all(tokens.map((t) => a.attest(t, NOW)));
    await a.attest(tokens[0]!, NOW);
    assert.equal(oidc.hits.discovery - before, 1);
  });

  it('a key rotated in at jwks_uri is picked up', async () => {
    const a = attestor({}, { jwksCooldownSeconds: 0 });
    await a.attest(await mint(k8s()), NOW);
    const fetched = oidc.hits.jwks;
    const next = issuerKey('rsa-2', 'RS256');
    oidc.keys.push(next.jwk);
    onCleanup(() => { oidc.keys.splice(oidc.keys.indexOf(next.jwk), 1); });
    assert.equal((await a.attest(await mint(k8s(), next), NOW)).service, 'web');
    assert.equal(oidc.hits.jwks - fetched, 1);
  });

  it('a flood of made-up kids does not refetch the JWKS within the cooldown', async () => {
    const a = attestor();
    await a.attest(await mint(k8s()), NOW);
    const fetched = oidc.hits.jwks;
    for (let i = 0; i < 5; i++) {
      await refused(a.attest(await mint(k8s(), rsa, { kid: `made-up-${i}` }), NOW), /unknown signing key/);
    }
    assert.equal(oidc.hits.jwks, fetched);
  });

  it('a failed discovery refresh keeps the last good jwks_uri', async () => {
    const a = attestor({}, { cacheSeconds: 0 });
    await a.attest(await mint(k8s()), NOW);
    oidc.discoveryDown = true;
    try {
      const before = oidc.hits.discovery;
      assert.equal((await a.attest(await mint(k8s()), NOW)).service, 'web');
      assert.equal(oidc.hits.discovery - before, 1);
    } finally {
      oidc.discoveryDown = false;
    }
  });

  it('a discovery endpoint that fails is reported with its HTTP status', async () => {
    oidc.discoveryDown = true;
    try {
      await refused(attestor().attest(await mint(k8s()), NOW), /OIDC discovery at .* failed: HTTP 503/);
    } finally {
      oidc.discoveryDown = false;
    }
  });

  it('a discovery document naming another issuer is refused, and not refetched for every token', async () => {
    const a = attestor({ discoveryUrl: `${oidc.url}/wrong/.well-known/openid-configuration` });
    const before = oidc.hits.wrong;
    await refused(a.attest(await mint(k8s()), NOW), /names issuer "https:\/\/evil\.example", not the configured/);
    await refused(a.attest(await mint(k8s()), NOW), /names issuer "https:\/\/evil\.example", not the configured/);
    assert.equal(oidc.hits.wrong - before, 1);
  });

  it('a discovery document pointing jwks_uri at cleartext http is refused', async () => {
    const a = attestor({ discoveryUrl: `${oidc.url}/cleartext/.well-known/openid-configuration` });
    await refused(a.attest(await mint(k8s()), NOW), /jwks_uri: .* must use https/);
  });

  it('an oversized discovery document is refused', async () => {
    const a = attestor({ discoveryUrl: `${oidc.url}/huge/.well-known/openid-configuration` });
    await refused(a.attest(await mint(k8s()), NOW), /larger than 65536 bytes/);
  });

  it('a discovery endpoint that never answers is given up on after 5 s', async () => {
    const a = attestor({ discoveryUrl: `${oidc.url}/hang/.well-known/openid-configuration` });
    const started = Date.now();
    await refused(a.attest(await mint(k8s()), NOW), /no answer within 5 s/);
    assert.ok(Date.now() - started < 10_000);
  });

  it('a static JWKS verifies without any fetch', async () => {
    const noFetch = (() => { throw new Error('a static JWKS must not fetch'); }) as unknown as typeof fetch;
    const issuer = 'https://kubernetes.default.svc.cluster.local';
    const a = attestor({ issuer, jwks: { keys: [rsa.jwk] } }, { fetch: noFetch });
    const r = await a.attest(await mint({ ...k8s(), iss: issuer }), NOW);
    assert.deepEqual([r.namespace, r.service], ['prod', 'web']);
    await refused(a.attest(await mint({ ...k8s(), iss: issuer }, ec), NOW), /unknown signing key/);
  });
});

describe('validateIssuerConfig', () => {
  const base = { name: 'gh', issuer: 'https://token.actions.githubusercontent.com', audiences: ['aegis'], rules: RULES };

  it('fills in the default algorithms', () => {
    assert.deepEqual(validateIssuerConfig(base).algorithms, ['RS256', 'ES256']);
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['no audiences', { audiences: undefined }, /audiences must be a non-empty list/],
    ['empty audiences', { audiences: [] }, /audiences must be a non-empty list/],
    ['alg none', { algorithms: ['RS256', 'none'] }, /algorithm none is refused/],
    ['HMAC', { algorithms: ['HS256'] }, /HS256 is refused/],
    ['unknown algorithm', { algorithms: ['RS1'] }, /unsupported algorithm RS1/],
    ['both discovery and jwks', { discoveryUrl: 'https://x.example/d', jwks: { keys: [] } }, /either discoveryUrl or jwks/],
    ['cleartext discovery', { discoveryUrl: 'http://x.example/.well-known/openid-configuration' }, /must use https/],
    ['issuer not usable for discovery', { issuer: 'kubernetes/serviceaccount' }, /not a URL/],
    ['private key in jwks', { jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' }] } }, /private or symmetric key material \(d\)/],
    ['symmetric key in jwks', { jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } }, /\(k\)/],
    ['no rules', { rules: [] }, /rules must be a non-empty list/],
    ['empty match', { rules: [{ match: {}, namespace: 'a', service: 'b' }] }, /must name at least one claim/],
    ['wildcard in the middle', { rules: [{ match: { repository: 'acme/*/web' }, namespace: 'a', service: 'b' }] }, /only allowed at the end/],
    ['invalid literal segment', { rules: [{ match: { sub: 'x' }, namespace: 'Prod', service: 'b' }] }, /rules\[0\]\.namespace: "Prod" is not a valid segment/],
    ['unbalanced template', { rules: [{ match: { sub: 'x' }, namespace: '{{sub', service: 'b' }] }, /unbalanced/],
    ['bad claim reference', { rules: [{ match: { sub: 'x' }, namespace: '{{a b}}', service: 'b' }] }, /invalid claim reference/],
    ['unknown field (typo)', { audience: ['aegis'] }, /unknown field audience/],
    ['no name', { name: '' }, /name must be a non-empty string/],
  ];
  for (const [what, over, reason] of cases) {
    it(`refuses ${what}`, () => {
      assert.throws(() => validateIssuerConfig({ ...base, ...over }), (err: unknown) => {
        assert.ok(err instanceof BadRequestError, String(err));
        assert.match(err.message, reason);
        return true;
      });
    });
  }

  it('refuses what is not an object', () => {
    assert.throws(() => validateIssuerConfig('gh'), /must be an object/);
  });
});

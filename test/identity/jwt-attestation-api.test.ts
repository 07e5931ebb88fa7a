import 'reflect-metadata';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { makeKeyAndCsr } from '../../src/identity/csr-make.js';
import { makeCore, type TestCore } from '../helpers/core.js';

// JWT attestation through the real pipeline: an operator configures an OIDC issuer (here with a static JWKS),
// a CI job presents its job token and gets an SVID for the identity the rules map it to.
describe('JWT attestation via identity/attest/jwt', () => {
  let t: TestCore;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ISSUER = 'https://ci.example.test';
  const jwt = (claims: Record<string, unknown>, alg = 'ES256') => new SignJWT(claims)
    .setProtectedHeader({ alg, kid: 'ci-1' }).setIssuer(ISSUER).setAudience('aegis').setIssuedAt().setExpirationTime('5m').sign(privateKey);

  before(async () => {
    t = await makeCore();
    const w = await t.call('update', 'identity/attestors/jwt/ci', {
      issuer: ISSUER, audiences: ['aegis'], algorithms: ['ES256'],
      jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'ci-1', alg: 'ES256', use: 'sig' }] },
      rules: [{ match: { repository: 'acme/web', ref: 'refs/heads/main' }, namespace: 'ci', service: 'web-deployer' }],
    });
    assert.equal(w.status, 200, w.error?.message);
  });

  it('a matching job token gets an SVID for the mapped identity and a workload token', async () => {
    const { csrPem } = await makeKeyAndCsr();
    const r = await t.call('update', 'identity/attest/jwt', { attestor: 'ci', jwt: await jwt({ sub: 'repo:acme/web', repository: 'acme/web', ref: 'refs/heads/main' }), csr: csrPem }, null);
    assert.equal(r.status, 200, r.error?.message);
    assert.equal(r.response!.data!.spiffe_id, 'spiffe://aegis.local/ns/ci/svc/web-deployer');
    assert.equal(new X509Certificate(r.response!.data!.certificate as string).subjectAltName, 'URI:spiffe://aegis.local/ns/ci/svc/web-deployer');
    assert.equal(r.response!.auth!.entity_id, 'spiffe://aegis.local/ns/ci/svc/web-deployer');
    const ev = await t.core.events.recent(5, 'attest.jwt');
    assert.equal(ev[0]!.outcome, 'success');
  });

  it('refuses an unmatched repository, a wrong audience and alg none, each with its reason and a failure event; nothing issued', async () => {
    const { csrPem } = await makeKeyAndCsr();
    const other = await t.call('update', 'identity/attest/jwt', { attestor: 'ci', jwt: await jwt({ sub: 'x', repository: 'evil/web', ref: 'refs/heads/main' }), csr: csrPem }, null);
    assert.equal(other.status, 400);
    assert.match(other.error!.message, /no rule/i);
    const wrongAud = await new SignJWT({ repository: 'acme/web', ref: 'refs/heads/main' }).setProtectedHeader({ alg: 'ES256', kid: 'ci-1' })
      .setIssuer(ISSUER).setAudience('someone-else').setExpirationTime('5m').sign(privateKey);
    const aud = await t.call('update', 'identity/attest/jwt', { attestor: 'ci', jwt: wrongAud, csr: csrPem }, null);
    assert.equal(aud.status, 400);
    assert.match(aud.error!.message, /aud/i);
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${b64({ alg: 'none' })}.${b64({ iss: ISSUER, aud: 'aegis', repository: 'acme/web', ref: 'refs/heads/main', exp: Math.floor(Date.now() / 1000) + 300 })}.`;
    const n = await t.call('update', 'identity/attest/jwt', { attestor: 'ci', jwt: none, csr: csrPem }, null);
    assert.equal(n.status, 400);
    assert.match(n.error!.message, /none/);
    const failures = (await t.core.events.recent(10, 'attest.jwt')).filter((e) => e.outcome === 'failure');
    assert.ok(failures.length >= 3);
    const unknown = await t.call('update', 'identity/attest/jwt', { attestor: 'nope', jwt: await jwt({}), csr: csrPem }, null);
    assert.equal(unknown.status, 404);
  });

  it('an attestor config that allows HS256 or has no rules is refused and not stored', async () => {
    const hs = await t.call('update', 'identity/attestors/jwt/bad', { issuer: ISSUER, audiences: ['a'], algorithms: ['HS256'], jwks: { keys: [] }, rules: [{ match: { sub: 'x' }, namespace: 'a', service: 'b' }] });
    assert.equal(hs.status, 400);
    const noRules = await t.call('update', 'identity/attestors/jwt/bad', { issuer: ISSUER, audiences: ['a'], jwks: { keys: [] }, rules: [] });
    assert.equal(noRules.status, 400);
    assert.equal((await t.call('read', 'identity/attestors/jwt/bad')).status, 404);
  });
});

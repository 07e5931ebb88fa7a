import 'reflect-metadata';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { toPem } from '../../src/identity/pem.js';
import { makeCore } from '../helpers/core.js';
import { startTestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { fails, ok } from '../helpers/results.js';

// The Vault PKI subset (pki/), through the real pipeline of one core; one test through real HTTP with openssl as
// the independent verifier. `init` mounts the engine at pki/, as it mounts secret/.
const t = await makeCore();
const dir = tempDir('pki');

const EC_FIELDS = ['ca_chain', 'certificate', 'expiration', 'issuing_ca', 'serial_number'];
const SERIAL = /^(?:[0-9a-f]{2}:){19}[0-9a-f]{2}$/;

const role = async (name: string, body: Record<string, unknown>) => ok(await t.call('update', `pki/roles/${name}`, body), `write role ${name}`);
const issue = (name: string, body: Record<string, unknown>) => t.call('update', `pki/issue/${name}`, body);
const sign = (name: string, body: Record<string, unknown>) => t.call('update', `pki/sign/${name}`, body);

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let files = 0;
function file(content: string): string {
  const p = join(dir, `f${++files}.pem`);
  writeFileSync(p, content);
  return p;
}

/** A CSR made by the openssl CLI (an independent producer), with its key. */
function opensslCsr(opts: { key?: string[]; subj: string; ext?: string[] }): { csr: string; key: KeyObject } {
  const keyPath = join(dir, `k${++files}.pem`);
  const csrPath = join(dir, `r${files}.csr`);
  const key = opts.key ?? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  openssl(['req', '-new', ...key, '-nodes', '-keyout', keyPath, '-subj', opts.subj, ...(opts.ext ?? []).flatMap((e) => ['-addext', e]), '-out', csrPath]);
  return { csr: readFileSync(csrPath, 'utf8'), key: createPrivateKey(readFileSync(keyPath)) };
}

function spki(key: KeyObject): Buffer {
  return (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'der', type: 'spki' });
}

/** Names of the SANs, as node prints them ("DNS:a, IP Address:10.0.0.1"). */
function sans(pem: string): string[] {
  return new X509Certificate(pem).subjectAltName?.split(', ') ?? [];
}

async function recordCount(): Promise<number> {
  return (await t.core.identity.records.list()).length;
}

await role('web', { allowed_domains: 'example.com', allow_subdomains: true, max_ttl: '72h' });

describe('pki roles (Vault: pki/roles/:name)', () => {
  it('a role takes Vault’s defaults for fields not given, is read back, listed, replaced by POST, patched and deleted', async () => {
    const written = await role('defaults', { allowed_domains: ['example.org'], allow_bare_domains: true, ttl: '1h', max_ttl: '24h' });
    const read = ok(await t.call('read', 'pki/roles/defaults'));
    assert.deepEqual(read, written);
    assert.deepEqual(read.allowed_domains, ['example.org']);
    assert.equal(read.allow_bare_domains, true);
    assert.equal(read.ttl, 3600);
    assert.equal(read.max_ttl, 86400);
    for (const f of ['allow_localhost', 'allow_ip_sans', 'enforce_hostnames', 'server_flag', 'client_flag', 'require_cn', 'allow_wildcard_certificates', 'use_csr_common_name', 'use_csr_sans']) {
      assert.equal(read[f], true, `${f} defaults to true`);
    }
    for (const f of ['allow_subdomains', 'allow_glob_domains', 'allow_any_name', 'no_store']) assert.equal(read[f], false, `${f} defaults to false`);
    assert.equal(read.key_type, 'ec');
    assert.equal(read.key_bits, 256, 'key_bits 0 is resolved to the key type’s default on write');
    assert.deepEqual(read.allowed_uri_sans, []);

    assert.ok(ok(await t.call('list', 'pki/roles/')).keys.includes('defaults'));

    // POST replaces the role: what is not given goes back to its default.
    await role('defaults', { allowed_domains: 'example.org' });
    assert.equal(ok(await t.call('read', 'pki/roles/defaults')).allow_bare_domains, false);
    // PATCH changes only what it gives.
    ok(await t.call('patch', 'pki/roles/defaults', { allow_subdomains: true, key_type: 'rsa' }));
    const patched = ok(await t.call('read', 'pki/roles/defaults'));
    assert.equal(patched.allow_subdomains, true);
    assert.deepEqual(patched.allowed_domains, ['example.org']);
    assert.equal(patched.key_bits, 2048, 'a key_type change alone moves key_bits to the new type’s default');

    ok(await t.call('delete', 'pki/roles/defaults'));
    fails(await t.call('read', 'pki/roles/defaults'), 404);
  });

  it('refuses key sizes the key type does not have, key types other than ec and rsa, and a ttl above max_ttl', async () => {
    fails(await t.call('update', 'pki/roles/bad', { key_type: 'ec', key_bits: 2048 }), 400, /key_bits 2048 is not valid for key_type ec: use 256, 384/);
    fails(await t.call('update', 'pki/roles/bad', { key_type: 'rsa', key_bits: 1024 }), 400, /key_bits 1024 is not valid for key_type rsa/);
    fails(await t.call('update', 'pki/roles/bad', { key_type: 'ed25519' }), 400, /key_type "ed25519" is not supported here/);
    fails(await t.call('update', 'pki/roles/bad', { ttl: '2h', max_ttl: '1h' }), 400, /ttl \(7200s\) must not be longer than max_ttl \(3600s\)/);
    fails(await t.call('read', 'pki/roles/bad'), 404);
    fails(await t.call('update', 'pki/roles/-bad-', {}), 400, /role name "-bad-"/);
  });

  it('refuses a role whose allowed_uri_sans would let it mint SPIFFE IDs (they come only from attestation)', async () => {
    fails(await t.call('update', 'pki/roles/spiffe', { allowed_uri_sans: 'spiffe://aegis.local/*' }), 400, /SPIFFE IDs are issued only through identity\//);
  });

  it('issuing under a role that does not exist is refused with 400 "unknown role"', async () => {
    fails(await issue('nope', { common_name: 'a.example.com' }), 400, /^unknown role: nope/);
    fails(await sign('nope', { csr: opensslCsr({ subj: '/CN=a.example.com' }).csr }), 400, /^unknown role: nope/);
  });
});

describe('pki issue (Vault: pki/issue/:role)', () => {
  it('returns Vault’s fields: a certificate for a server-made key, the private key matching it, chained to the trust domain’s CA', async () => {
    const before = Math.floor(Date.now() / 1000);
    const d = ok(await issue('web', { common_name: 'api.example.com', alt_names: 'www.example.com,ops@mail.example.com', ip_sans: ['10.0.0.1', '::1'], ttl: '1h' }));
    assert.deepEqual(Object.keys(d).sort(), [...EC_FIELDS, 'private_key', 'private_key_type'].sort());
    assert.equal(d.private_key_type, 'ec');
    assert.match(d.private_key, /^-----BEGIN EC PRIVATE KEY-----\n/, 'private_key_format=der gives SEC 1 for EC keys, as Vault');
    assert.match(d.serial_number, SERIAL);

    const cert = new X509Certificate(d.certificate);
    assert.ok(spki(createPrivateKey(d.private_key)).equals(spki(cert.publicKey)), 'the private key is the certificate’s');
    assert.equal(d.serial_number, cert.serialNumber.toLowerCase().replace(/(..)(?!$)/g, '$1:'));
    assert.equal(cert.subject, 'CN=api.example.com');
    assert.deepEqual(sans(d.certificate).sort(), ['DNS:api.example.com', 'DNS:www.example.com', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:10.0.0.1', 'email:ops@mail.example.com'].sort());
    assert.ok(d.expiration >= before + 3600 && d.expiration <= before + 3601, `expiration ${d.expiration} is 1h from now`);

    const issuer = t.core.identity.ca.activeIssuer();
    assert.equal(d.issuing_ca, toPem(issuer.certDer));
    assert.equal(d.ca_chain[0], d.issuing_ca, 'ca_chain starts with the issuing CA');
    assert.equal(d.ca_chain.at(-1).trim(), t.core.identity.ca.bundlePem().trim(), 'and ends with the root (Vault ≥ 1.11 includes it)');
    assert.ok(cert.verify(issuer.nodeCert.publicKey), 'signed by the active intermediate');
    assert.ok(cert.checkIssued(issuer.nodeCert));

    // The profile, read back with an independent parser.
    const p = new x509.X509Certificate(d.certificate);
    const bc = p.getExtension(x509.BasicConstraintsExtension)!;
    assert.equal(bc.ca, false);
    assert.equal(bc.critical, true);
    const ku = p.getExtension(x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature, 'an EC key gets digitalSignature only (it cannot encipher)');
    assert.deepEqual([...p.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const issuerSki = new x509.X509Certificate(issuer.certDer).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
    assert.equal(p.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId, issuerSki);
    assert.ok(p.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
    assert.ok(BigInt(`0x${cert.serialNumber}`) >= 1n << 128n, 'the serial carries at least 128 random bits');

    // Recorded: readable by serial.
    const rec = ok(await t.call('read', `pki/cert/${d.serial_number}`));
    assert.equal(rec.certificate, d.certificate);
    assert.equal(rec.revocation_time, 0);
  });

  it('an rsa role makes an RSA key of its key_bits, with keyEncipherment; private_key_format=pkcs8 gives "PRIVATE KEY"', async () => {
    await role('rsa', { allowed_domains: 'example.com', allow_subdomains: true, key_type: 'rsa', key_bits: 3072 });
    const d = ok(await issue('rsa', { common_name: 'rsa.example.com', private_key_format: 'pkcs8' }));
    assert.equal(d.private_key_type, 'rsa');
    assert.match(d.private_key, /^-----BEGIN PRIVATE KEY-----\n/);
    const key = createPrivateKey(d.private_key);
    assert.equal(key.asymmetricKeyDetails?.modulusLength, 3072);
    assert.ok(spki(key).equals(spki(new X509Certificate(d.certificate).publicKey)));
    const ku = new x509.X509Certificate(d.certificate).getExtension(x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    assert.match(ok(await issue('rsa', { common_name: 'rsa.example.com' })).private_key, /^-----BEGIN RSA PRIVATE KEY-----\n/);
  });

  it('server_flag and client_flag decide the extended key usages', async () => {
    await role('client-only', { allowed_domains: 'example.com', allow_subdomains: true, server_flag: false });
    const d = ok(await issue('client-only', { common_name: 'c.example.com' }));
    assert.deepEqual([...new x509.X509Certificate(d.certificate).getExtension(x509.ExtendedKeyUsageExtension)!.usages], [x509.ExtendedKeyUsage.clientAuth]);
  });

  it('refuses formats other than pem, and other_sans, with 400', async () => {
    fails(await issue('web', { common_name: 'a.example.com', format: 'der' }), 400, /format "der" is not supported here: use pem/);
    fails(await issue('web', { common_name: 'a.example.com', format: 'pem_bundle' }), 400, /format "pem_bundle"/);
    fails(await issue('web', { common_name: 'a.example.com', private_key_format: 'jwk' }), 400, /private_key_format "jwk"/);
    fails(await issue('web', { common_name: 'a.example.com', other_sans: '1.2.3.4;UTF8:x' }), 400, /other_sans is not supported/);
  });

  it('a TTL above the role’s max_ttl is capped to it, with a warning (Vault)', async () => {
    const r = await issue('web', { common_name: 'ttl.example.com', ttl: '100h' });
    const d = ok(r);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(d.expiration - (now + 72 * 3600)) <= 2, 'capped at max_ttl 72h');
    assert.ok(r.response!.warnings!.some((w) => /longer than the permitted max_ttl 259200s/.test(w)), String(r.response!.warnings));
  });

  it('a certificate never outlives the issuing CA: a longer TTL ends at the CA’s notAfter, with a warning', async () => {
    await role('long', { allowed_domains: 'example.com', allow_subdomains: true, max_ttl: '87600h' });
    const r = await issue('long', { common_name: 'long.example.com', ttl: '87600h' });
    const d = ok(r);
    const caEnd = Math.floor(t.core.identity.ca.activeIssuer().notAfter.getTime() / 1000);
    assert.equal(d.expiration, caEnd);
    assert.ok(r.response!.warnings!.some((w) => /ends when the issuing CA does/.test(w)));
  });

  it('exclude_cn_from_sans leaves the CN out of the SANs; a role with require_cn=false issues for SANs alone', async () => {
    const d = ok(await issue('web', { common_name: 'cn.example.com', alt_names: 'san.example.com', exclude_cn_from_sans: true }));
    assert.deepEqual(sans(d.certificate), ['DNS:san.example.com']);

    await role('no-cn', { allowed_domains: 'example.com', allow_subdomains: true, require_cn: false });
    const n = ok(await issue('no-cn', { alt_names: 'only.example.com' }));
    const p = new x509.X509Certificate(n.certificate);
    assert.equal(p.subject, '');
    assert.equal(p.getExtension(x509.SubjectAlternativeNameExtension)!.critical, true, 'RFC 5280 §4.2.1.6: SAN is critical when the subject is empty');
    fails(await issue('web', { alt_names: 'only.example.com' }), 400, /common_name is required by role "web" \(require_cn is true\)/);
  });

  it('a no_store role issues without recording: the certificate can be neither read back nor revoked', async () => {
    await role('ephemeral', { allowed_domains: 'example.com', allow_subdomains: true, no_store: true });
    const before = await recordCount();
    const d = ok(await issue('ephemeral', { common_name: 'e.example.com' }));
    assert.equal(await recordCount(), before);
    fails(await t.call('read', `pki/cert/${d.serial_number}`), 404);
    fails(await t.call('update', 'pki/revoke', { serial_number: d.serial_number }), 404);
  });
});

describe('pki name rules (Vault’s allowed_domains, bare, subdomains, globs, localhost, IP and URI SANs)', () => {
  it('every name a role does not allow is refused with 400 naming the name and the rule, and nothing is issued or stored', async () => {
    await role('strict', {
      allowed_domains: 'example.com', allow_bare_domains: true, allow_localhost: false, allow_ip_sans: false,
      allowed_uri_sans: 'https://*.example.com/*', allow_wildcard_certificates: false,
    });
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ common_name: 'evil.com' }, /common name "evil.com" not allowed by role "strict": it matches none of allowed_domains \[example.com\] \(allow_bare_domains=true, allow_subdomains=false/],
      [{ common_name: 'a.example.com' }, /common name "a.example.com" not allowed by role "strict".*allow_subdomains=false/],
      [{ common_name: 'example.com', alt_names: 'localhost' }, /subject alternate name "localhost" not allowed by role "strict"/],
      [{ common_name: 'example.com', alt_names: 'x@evil.com' }, /subject alternate name "x@evil.com" not allowed/],
      [{ common_name: 'example.com', ip_sans: '10.0.0.1' }, /IP SANs \[10.0.0.1\] in the request not allowed by role "strict": allow_ip_sans is false/],
      [{ common_name: 'example.com', uri_sans: 'https://evil.com/x' }, /URI SAN "https:\/\/evil.com\/x" in the request not allowed by role "strict": it matches none of allowed_uri_sans/],
      [{ common_name: 'exa_mple.com' }, /"exa_mple.com" is not a valid hostname \(enforce_hostnames is true\)/],
      [{ common_name: '*.example.com' }, /wildcard name and allow_wildcard_certificates is false/],
      [{ common_name: 'example.com', alt_names: 'evil.com' }, /subject alternate name "evil.com" not allowed/],
    ];
    const records = await recordCount();
    const listed = (await t.core.router.get('pki/')!.store.list('certs/')).length;
    for (const [body, message] of refused) fails(await issue('strict', body), 400, message);
    assert.equal(await recordCount(), records, 'no certificate was recorded');
    assert.equal((await t.core.router.get('pki/')!.store.list('certs/')).length, listed);

    // What the role does allow.
    const d = ok(await issue('strict', { common_name: 'example.com', uri_sans: 'https://api.example.com/v1' }));
    assert.deepEqual(sans(d.certificate).sort(), ['DNS:example.com', 'URI:https://api.example.com/v1']);
  });

  it('refuses a spiffe:// URI SAN under any role: a PKI certificate must never pass for a workload’s X509-SVID', async () => {
    await role('any-uri', { allow_any_name: true, allowed_uri_sans: '*' });
    const id = t.core.identity.workloadId('default', 'payments');
    fails(await issue('any-uri', { common_name: 'x.example.com', uri_sans: id }), 400, /SPIFFE IDs are issued only through identity\//);
    const { csr } = opensslCsr({ subj: '/CN=x.example.com', ext: [`subjectAltName=URI:${id}`] });
    fails(await sign('any-uri', { csr }), 400, /URI SAN "spiffe:\/\/.*" in the CSR not allowed.*SPIFFE IDs/);
  });

  it('subdomains include wildcards; globs match across labels; allow_localhost; allow_any_name still enforces hostnames', async () => {
    assert.deepEqual(sans(ok(await issue('web', { common_name: '*.example.com' })).certificate), ['DNS:*.example.com']);
    fails(await issue('web', { common_name: 'example.com' }), 400, /allow_bare_domains=false/);
    assert.deepEqual(sans(ok(await issue('web', { common_name: 'localhost' })).certificate), ['DNS:localhost'], 'allow_localhost defaults to true');

    await role('glob', { allowed_domains: '*.svc.example.com', allow_glob_domains: true });
    ok(await issue('glob', { common_name: 'a.b.svc.example.com' }));
    fails(await issue('glob', { common_name: 'svc.example.com' }), 400, /allow_glob_domains=true/);

    await role('anything', { allow_any_name: true });
    ok(await issue('anything', { common_name: 'whatever.test' }));
    fails(await issue('anything', { common_name: 'not a host' }), 400, /not a valid hostname/);
    await role('free-text', { allow_any_name: true, enforce_hostnames: false });
    const d = ok(await issue('free-text', { common_name: 'Payments Team', alt_names: 'pay.example.com' }));
    assert.equal(new X509Certificate(d.certificate).subject, 'CN=Payments Team');
    assert.deepEqual(sans(d.certificate), ['DNS:pay.example.com'], 'a CN that is no hostname stays out of the SANs (Vault)');
  });
});

describe('pki sign (Vault: pki/sign/:role)', () => {
  it('signs an openssl CSR: the CSR’s key is certified, CN and SANs come from the CSR, and openssl verifies the chain', async () => {
    const { csr, key } = opensslCsr({ subj: '/CN=svc.example.com', ext: ['subjectAltName=DNS:svc.example.com,DNS:alt.example.com,IP:10.1.2.3'] });
    const d = ok(await sign('web', { csr, common_name: 'svc.example.com' }));
    assert.deepEqual(Object.keys(d).sort(), EC_FIELDS);
    assert.ok(spki(key).equals(spki(new X509Certificate(d.certificate).publicKey)), 'the certificate is for the CSR’s key');
    assert.deepEqual(sans(d.certificate).sort(), ['DNS:alt.example.com', 'DNS:svc.example.com', 'IP Address:10.1.2.3']);
    const out = openssl(['verify', '-CAfile', file(t.core.identity.ca.bundlePem()), '-untrusted', file(d.issuing_ca), file(d.certificate)]);
    assert.match(out, /: OK/);
  });

  it('a CSR that asks for CA:true still gets CA:false: a role never makes a CA', async () => {
    const { csr } = opensslCsr({ subj: '/CN=ca.example.com', ext: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign'] });
    const p = new x509.X509Certificate(ok(await sign('web', { csr })).certificate);
    assert.equal(p.getExtension(x509.BasicConstraintsExtension)!.ca, false);
    assert.equal(p.getExtension(x509.KeyUsagesExtension)!.usages & x509.KeyUsageFlags.keyCertSign, 0);
  });

  it('refuses a CSR whose signature does not verify (no proof the requester holds the key)', async () => {
    const { csr } = opensslCsr({ subj: '/CN=forged.example.com' });
    const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] ^= 0x01;
    fails(await sign('web', { csr: toPem(der, 'CERTIFICATE REQUEST') }), 400, /csr: its signature does not verify/);
    fails(await sign('web', { csr: 'not a csr' }), 400, /csr: not a PEM PKCS#10 certificate request/);
  });

  it('refuses a CSR key of another type or smaller than the role’s key_bits', async () => {
    const rsa = opensslCsr({ subj: '/CN=r.example.com', key: ['-newkey', 'rsa:2048'] });
    fails(await sign('web', { csr: rsa.csr }), 400, /role "web" requires keys of type ec, but the CSR's key is rsa/);
    await role('p384', { allowed_domains: 'example.com', allow_subdomains: true, key_bits: 384 });
    fails(await sign('p384', { csr: opensslCsr({ subj: '/CN=s.example.com' }).csr }), 400, /requires a key of at least 384 bits, but the CSR's key has 256/);
    ok(await sign('p384', { csr: opensslCsr({ subj: '/CN=s.example.com', key: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'] }).csr }));
  });

  it('names in a CSR are held to the role like names in a request', async () => {
    const { csr } = opensslCsr({ subj: '/CN=ok.example.com', ext: ['subjectAltName=DNS:ok.example.com,DNS:evil.com'] });
    const before = await recordCount();
    fails(await sign('web', { csr }), 400, /subject alternate name "evil.com" not allowed by role "web"/);
    const bad = opensslCsr({ subj: '/CN=evil.com' });
    fails(await sign('web', { csr: bad.csr, common_name: 'ok.example.com' }), 400, /common name "evil.com" not allowed/);
    assert.equal(await recordCount(), before);
  });
});

describe('pki revoke and cert (Vault: pki/revoke, pki/cert/:serial, pki/certs)', () => {
  it('revoke sets revocation_time, cert/:serial shows it, the serial joins the CRL, and revoking again keeps the first time', async () => {
    const d = ok(await issue('web', { common_name: 'revoked.example.com' }));
    const r = ok(await t.call('update', 'pki/revoke', { serial_number: d.serial_number }));
    assert.equal(typeof r.revocation_time, 'number');
    assert.ok(Math.abs(r.revocation_time - Date.now() / 1000) < 5);

    const c = ok(await t.call('read', `pki/cert/${d.serial_number.replace(/:/g, '-')}`));
    assert.deepEqual({ certificate: c.certificate, revocation_time: c.revocation_time }, { certificate: d.certificate, revocation_time: r.revocation_time });
    assert.equal(Date.parse(c.revocation_time_rfc3339) / 1000 | 0, r.revocation_time);

    const crl = await t.call('read', 'pki/crl', {}, null);
    const entries = new x509.X509Crl(crl.response!.raw!.body as Buffer).entries.map((e) => e.serialNumber.toLowerCase());
    assert.ok(entries.includes(d.serial_number.replace(/:/g, '')), 'the revoked serial is in the CRL');

    assert.equal(ok(await t.call('update', 'pki/revoke', { serial_number: d.serial_number })).revocation_time, r.revocation_time);
  });

  it('revoke by certificate PEM works like revoke by serial', async () => {
    const d = ok(await issue('web', { common_name: 'bypem.example.com' }));
    const r = ok(await t.call('update', 'pki/revoke', { certificate: d.certificate }));
    assert.equal(ok(await t.call('read', `pki/cert/${d.serial_number}`)).revocation_time, r.revocation_time);
  });

  it('pki/ reads and revokes only its own certificates: a workload SVID’s serial is unknown here', async () => {
    const svid = ok(await issue('web', { common_name: 'svid-stand-in.example.com', ttl: '1h' }));
    // A record the identity engine made (spiffe_id set), not this mount.
    const serial = '55:'.repeat(19) + '55';
    await t.core.identity.records.add({ serial_number: serial, spiffe_id: t.core.identity.workloadId('default', 'db'), certificate: svid.certificate, issuer_id: 1, not_after: new Date(Date.now() + 3600_000).toISOString() });
    assert.ok(await t.core.identity.records.get(serial));
    fails(await t.call('read', `pki/cert/${serial}`), 404, /was issued and recorded by pki\//);
    fails(await t.call('update', 'pki/revoke', { serial_number: serial }), 404);
    assert.equal((await t.core.identity.records.get(serial))!.revoked_at, undefined, 'the SVID was not revoked');
  });

  it('unknown or malformed serials: 404 and 400; the special serial "ca" is the issuing CA; LIST certs lists serials', async () => {
    fails(await t.call('read', `pki/cert/${'0a:'.repeat(19)}0a`), 404);
    fails(await t.call('read', 'pki/cert/xyz'), 400, /expected colon- or hyphen-separated hex/);
    fails(await t.call('update', 'pki/revoke', {}), 400, /exactly one of serial_number or certificate/);
    assert.equal(ok(await t.call('read', 'pki/cert/ca')).certificate, toPem(t.core.identity.ca.activeIssuer().certDer));
    const d = ok(await issue('web', { common_name: 'listed.example.com' }));
    assert.ok(ok(await t.call('list', 'pki/certs/')).keys.includes(d.serial_number));
  });
});

describe('pki CA endpoints and authorization', () => {
  it('ca/pem and ca answer without a token (Vault serves them unauthenticated): PEM and DER of the issuing CA', async () => {
    const issuer = t.core.identity.ca.activeIssuer();
    const pem = await t.call('read', 'pki/ca/pem', {}, null);
    assert.equal(pem.status, 200, pem.error?.message);
    assert.equal(pem.response!.raw!.body, toPem(issuer.certDer));
    const der = await t.call('read', 'pki/ca', {}, null);
    assert.equal(der.response!.raw!.contentType, 'application/pkix-cert');
    assert.ok((der.response!.raw!.body as Buffer).equals(issuer.certDer));
  });

  it('a token without policy gets 403 on issue, sign, roles and revoke, and nothing is issued', async () => {
    const created = await t.call('update', 'auth/token/create', { policies: [], no_default_policy: true });
    assert.equal(created.status, 200, created.error?.message);
    const noPolicy = created.response!.auth!.client_token;
    const before = await recordCount();
    fails(await t.call('update', 'pki/issue/web', { common_name: 'a.example.com' }, noPolicy), 403, /permission denied/);
    fails(await t.call('update', 'pki/issue/web', { common_name: 'a.example.com' }, null), 403, /permission denied/);
    fails(await t.call('update', 'pki/sign/web', { csr: 'x' }, noPolicy), 403);
    fails(await t.call('update', 'pki/roles/web', { allow_any_name: true }, noPolicy), 403);
    fails(await t.call('update', 'pki/revoke', { serial_number: '01' }, noPolicy), 403);
    assert.equal(await recordCount(), before);
    assert.equal(ok(await t.call('read', 'pki/roles/web')).allow_any_name, false);
  });
});

describe('pki over real HTTP, checked with openssl', () => {
  it('issues a certificate that openssl verifies against the trust bundle, with the SANs asked for', async () => {
    const s = await startTestServer();
    const auditLog = join(dir, 'audit.log');
    assert.equal((await s.api('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: auditLog } } })).status, 204);
    const w = await s.api('POST', 'pki/roles/web', { body: { allowed_domains: ['example.com'], allow_subdomains: true } });
    assert.equal(w.status, 200, w.text);

    const r = await s.api('POST', 'pki/issue/web', { body: { common_name: 'api.example.com', alt_names: 'www.example.com', ip_sans: '10.0.0.7', ttl: '2h' } });
    assert.equal(r.status, 200, r.text);
    const d = r.body.data;
    const bundle = await s.api('GET', 'identity/bundle', { token: null });
    assert.equal(bundle.status, 200);
    const certPath = file(d.certificate);
    const out = openssl(['verify', '-CAfile', file(bundle.text), '-untrusted', file(d.issuing_ca), certPath]);
    assert.equal(out.trim(), `${certPath}: OK`);
    const text = openssl(['x509', '-noout', '-text', '-in', certPath]);
    assert.match(text, /DNS:api\.example\.com, DNS:www\.example\.com, IP Address:10\.0\.0\.7/);
    assert.match(text, /TLS Web Server Authentication, TLS Web Client Authentication/);
    assert.match(text, /CA:FALSE/);
    // The key openssl reads from private_key is the certificate's.
    const keyPub = openssl(['pkey', '-pubout', '-in', file(d.private_key)]);
    assert.equal(keyPub, openssl(['x509', '-noout', '-pubkey', '-in', certPath]));

    const ca = await s.api('GET', 'pki/ca/pem', { token: null });
    assert.equal(ca.status, 200);
    assert.equal(ca.text, d.issuing_ca);
    const rev = await s.api('POST', 'pki/revoke', { body: { serial_number: d.serial_number } });
    assert.equal(rev.status, 200, rev.text);
    const c = await s.api('GET', `pki/cert/${d.serial_number}`);
    assert.equal(c.body.data.revocation_time, rev.body.data.revocation_time);

    // Audit logs the certificate in clear (it is public) but the private key only as an HMAC.
    const log = readFileSync(auditLog, 'utf8');
    const keyBody = d.private_key.split('\n')[1];
    assert.ok(!log.includes(keyBody), 'the private key is not in the audit log');
    assert.ok(log.includes(JSON.stringify(d.certificate).slice(1, 60)), 'the certificate is logged in clear');
  });
});

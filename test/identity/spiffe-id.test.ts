import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError } from '../../src/core/errors.js';
import { parseSpiffeId, trustDomainId, validateTrustDomain, workloadSpiffeId } from '../../src/identity/spiffe-id.js';

// Vectors: the SPIFFE-ID standard's own examples (§2.2, §2.1.1) and the rules of §2.1–§2.3, with go-spiffe's
// error wording.

function refuses(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BadRequestError, `expected BadRequestError, got ${String(err)}`);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'ERR_BAD_REQUEST');
    assert.match(err.message, message);
    return true;
  });
}

const TD_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_CHARS = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

describe('SPIFFE ID parsing (SPIFFE-ID §2)', () => {
  it('accepts the standard\'s examples', () => {
    const examples: [string, string, string][] = [
      ['spiffe://trust-domain-name/path', 'trust-domain-name', '/path'],
      ['spiffe://staging.example.com/payments/mysql', 'staging.example.com', '/payments/mysql'],
      ['spiffe://staging.example.com/payments/web-fe', 'staging.example.com', '/payments/web-fe'],
      ['spiffe://k8s-west.example.com/ns/staging/sa/default', 'k8s-west.example.com', '/ns/staging/sa/default'],
      ['spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453', 'example.com', '/9eebccd2-12bf-40a6-b262-65fe0487d453'],
      ['spiffe://trust_domain_name.example.com/x', 'trust_domain_name.example.com', '/x'],
    ];
    for (const [uri, trustDomain, path] of examples) assert.deepEqual(parseSpiffeId(uri), { trustDomain, path, uri });
  });

  it('the path is optional: spiffe://<td> is the trust domain\'s own ID', () => {
    assert.deepEqual(parseSpiffeId('spiffe://trustdomain'), { trustDomain: 'trustdomain', path: '', uri: 'spiffe://trustdomain' });
  });

  it('"The host part of the authority MUST contain only letters, numbers, dots, dashes, and underscores" — every byte 0–255', () => {
    for (let i = 0; i < 256; i++) {
      const c = String.fromCharCode(i);
      if (c === '/') continue; // the path delimiter
      const id = `spiffe://trustdomain${c}/path`;
      if (TD_CHARS.has(c)) assert.equal(parseSpiffeId(id).trustDomain, `trustdomain${c}`);
      else assert.throws(() => parseSpiffeId(id), BadRequestError, `trust domain char 0x${i.toString(16)} must be refused`);
    }
  });

  it('"Individual path segments MUST contain only letters, numbers, dots, dashes, and underscores" — every byte 0–255', () => {
    for (let i = 0; i < 256; i++) {
      const c = String.fromCharCode(i);
      if (c === '/') continue;
      const id = `spiffe://trustdomain/path${c}`;
      if (PATH_CHARS.has(c)) assert.equal(parseSpiffeId(id).path, `/path${c}`);
      else assert.throws(() => parseSpiffeId(id), BadRequestError, `path char 0x${i.toString(16)} must be refused`);
    }
    refuses(() => parseSpiffeId('spiffe://trustdomain/path$'), /path segment characters are limited to letters, numbers, dots, dashes, and underscores/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/pa th'), /path segment characters/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/pa:th'), /path segment characters/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/pa@th'), /path segment characters/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/caf\u00e9'), /path segment characters/);
  });

  it('"Valid SPIFFE IDs MUST have the scheme set to spiffe" (lowercase, with "//")', () => {
    refuses(() => parseSpiffeId('s'), /scheme is missing or invalid/);
    refuses(() => parseSpiffeId('spiffe:/'), /scheme is missing or invalid/);
    refuses(() => parseSpiffeId('spiffe:path/element'), /scheme is missing or invalid/);
    refuses(() => parseSpiffeId('http://domain.test/path/element'), /scheme is missing or invalid/);
    refuses(() => parseSpiffeId('192.168.2.2:6688'), /scheme is missing or invalid/);
    refuses(() => parseSpiffeId('Spiffe://trustdomain/path'), /scheme must be lowercase/);
    refuses(() => parseSpiffeId('SPIFFE://trustdomain/path'), /scheme must be lowercase/);
  });

  it('refuses an empty ID', () => {
    refuses(() => parseSpiffeId(''), /empty/);
  });

  it('"The host part of the authority MUST NOT be empty"', () => {
    refuses(() => parseSpiffeId('spiffe://'), /trust domain is missing/);
    refuses(() => parseSpiffeId('spiffe:///'), /trust domain is missing/);
    refuses(() => parseSpiffeId('spiffe:///path/element'), /trust domain is missing/);
  });

  it('"The userinfo and port parts of the authority component MUST be empty"', () => {
    refuses(() => parseSpiffeId('spiffe://domain.test:8080/path/element'), /port is not allowed/);
    refuses(() => parseSpiffeId('spiffe://domain.test:/path/element'), /port is not allowed/);
    refuses(() => parseSpiffeId('spiffe://user:password@test.org/path/element'), /user info is not allowed/);
    refuses(() => parseSpiffeId('spiffe://user@test.org/path/element'), /user info is not allowed/);
  });

  it('"The host part of the authority MUST be lowercase"', () => {
    refuses(() => parseSpiffeId('spiffe://Example.org/path'), /trust domain must be lowercase/);
  });

  it('"MUST NOT include percent-encoded characters" (trust domain and path)', () => {
    refuses(() => parseSpiffeId('spiffe://%62%61%64/path'), /percent-encoded characters are not allowed in the trust domain/);
    refuses(() => parseSpiffeId('spiffe://%F0%9F%A4%AF/path'), /percent-encoded/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/%62%61%64'), /path cannot contain percent-encoded characters/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/%F0%9F%A4%AF'), /percent-encoded/);
  });

  it('IPv4 dotted quads are valid trust domain names; IPv6 literals are not', () => {
    assert.equal(parseSpiffeId('spiffe://192.168.1.1/path').trustDomain, '192.168.1.1');
    refuses(() => parseSpiffeId('spiffe://[::1]/path'), /IPv6 address literals are not valid trust domain names/);
  });

  it('"MUST NOT include a query or fragment component"', () => {
    refuses(() => parseSpiffeId('spiffe://domain.test/path/element?query=1'), /query is not allowed/);
    refuses(() => parseSpiffeId('spiffe://domain.test/path/element#fragment-1'), /fragment is not allowed/);
    refuses(() => parseSpiffeId('spiffe://domain.test?x'), /query is not allowed/);
  });

  it('"The path component MUST NOT include segments that are empty"; "MUST NOT include a trailing /"', () => {
    refuses(() => parseSpiffeId('spiffe://trustdomain/'), /path cannot have a trailing slash/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/path/'), /path cannot have a trailing slash/);
    refuses(() => parseSpiffeId('spiffe://trustdomain//'), /path cannot contain empty segments/);
    refuses(() => parseSpiffeId('spiffe://trustdomain//path'), /path cannot contain empty segments/);
    refuses(() => parseSpiffeId('spiffe://trustdomain/a//b'), /path cannot contain empty segments/);
  });

  it('"MUST NOT include segments that are ... relative path modifiers (i.e. ., ..)"', () => {
    for (const p of ['/.', '/./path', '/path/./other', '/path/..', '/..', '/../path', '/path/../other']) {
      refuses(() => parseSpiffeId(`spiffe://trustdomain${p}`), /path cannot contain dot segments/);
    }
    // Segments that merely contain dots are fine.
    for (const p of ['/.path', '/..path', '/...']) assert.equal(parseSpiffeId(`spiffe://trustdomain${p}`).path, p);
  });

  it('the path is case-sensitive (§2.4) and kept as given', () => {
    assert.equal(parseSpiffeId('spiffe://td/Ns/Web').path, '/Ns/Web');
    assert.notEqual(parseSpiffeId('spiffe://td/a').uri, parseSpiffeId('spiffe://td/A').uri);
  });

  it('"SPIFFE implementations MUST support SPIFFE URIs up to 2048 bytes"; longer ones are refused', () => {
    const base = 'spiffe://example.org';
    const longPath = (total: number) => {
      let p = '';
      while (base.length + p.length + 2 <= total) p += '/' + 'a'.repeat(Math.min(100, total - base.length - p.length - 1));
      return base + p;
    };
    const max = longPath(2048);
    assert.equal(max.length, 2048);
    assert.equal(parseSpiffeId(max).uri, max);
    refuses(() => parseSpiffeId(max + 'a'), /longer than 2048 bytes/);
  });

  it('"a maximum length of a trust domain name is 255 bytes"', () => {
    const td255 = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}`;
    assert.equal(td255.length, 255);
    assert.equal(parseSpiffeId(`spiffe://${td255}/x`).trustDomain, td255);
    refuses(() => parseSpiffeId(`spiffe://${td255}e/x`), /trust domain is longer than 255 bytes/);
  });

  it('error messages quote the offending ID', () => {
    refuses(() => parseSpiffeId('spiffe://trustdomain/path/'), /^invalid SPIFFE ID "spiffe:\/\/trustdomain\/path\/": path cannot have a trailing slash$/);
  });
});

describe('trust domains and workload IDs', () => {
  it('validateTrustDomain accepts names of [a-z0-9.-_] up to 255 bytes', () => {
    for (const td of ['example.org', 'trust_domain_name.example.com', '10.0.0.1', 'a', 'prod-1']) validateTrustDomain(td);
    refuses(() => validateTrustDomain(''), /trust domain is missing/);
    refuses(() => validateTrustDomain('Example.org'), /must be lowercase/);
    refuses(() => validateTrustDomain('example.org:443'), /port is not allowed/);
    refuses(() => validateTrustDomain('spiffe://example.org'), /invalid trust domain "spiffe:\/\/example.org"/);
    refuses(() => validateTrustDomain('a'.repeat(256)), /longer than 255/);
  });

  it('trustDomainId is spiffe://<td>', () => {
    assert.equal(trustDomainId('example.org'), 'spiffe://example.org');
    refuses(() => trustDomainId('bad domain'), /trust domain characters/);
  });

  it('workloadSpiffeId is spiffe://<td>/ns/<namespace>/svc/<service>, and parses back', () => {
    const id = workloadSpiffeId('example.org', 'payments', 'web-fe');
    assert.equal(id, 'spiffe://example.org/ns/payments/svc/web-fe');
    assert.deepEqual(parseSpiffeId(id), { trustDomain: 'example.org', path: '/ns/payments/svc/web-fe', uri: id });
    assert.equal(workloadSpiffeId('example.org', 'a'.repeat(63), 'x_1.y'), `spiffe://example.org/ns/${'a'.repeat(63)}/svc/x_1.y`);
  });

  it('refuses a namespace or service that is not one lowercase segment of 1–63 characters', () => {
    const bad = ['', 'Web', 'a/b', '.', '..', 'a b', 'a'.repeat(64), 'café', '%41'];
    for (const v of bad) {
      refuses(() => workloadSpiffeId('example.org', v, 'svc'), /invalid namespace/);
      refuses(() => workloadSpiffeId('example.org', 'ns', v), /invalid service/);
    }
    refuses(() => workloadSpiffeId('Example.org', 'ns', 'svc'), /invalid trust domain/);
  });
});

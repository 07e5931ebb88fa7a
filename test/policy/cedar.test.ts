import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_POLICY, ROOT_POLICY } from '../../src/policy/index.js';
import { makeCore, request, type TestCore } from '../helpers/core.js';

let t: TestCore;

// Secrets written by root before the tests; every authorization check below reads one of them, so "allowed"
// is a 200 with the secret and "denied" a 403 (never a 404 that could hide which one happened).
const SECRETS = [
  'team-a/x', 'team-a/deep/y', 'team-b/x', 'team-a-evil/x', 'alpha/x', 'beta/x', 'prod/db', 'dev/db', 'net/x',
  'shared/x', 'late/x', 'cache/x',
];

before(async () => {
  t = await makeCore();
  for (const s of SECRETS) {
    const r = await t.call('update', `secret/data/${s}`, { data: { value: s } });
    assert.equal(r.status, 200, `seed ${s}: ${r.error?.message}`);
  }
});

async function writePolicy(name: string, text: string): Promise<void> {
  const r = await t.call('update', `sys/policies/cedar/${name}`, { policy: text });
  assert.equal(r.status, 204, `write policy ${name}: ${r.status} ${r.error?.message}`);
}

async function deletePolicy(name: string): Promise<void> {
  const r = await t.call('delete', `sys/policies/cedar/${name}`);
  assert.equal(r.status, 204, `delete policy ${name}: ${r.status} ${r.error?.message}`);
}

async function listPolicies(): Promise<string[]> {
  const r = await t.call('list', 'sys/policies/cedar/');
  assert.equal(r.status, 200, r.error?.message);
  return (r.response!.data as { keys: string[] }).keys;
}

/** A token (made by root) carrying `policies` (plus default) and `meta`. */
async function tokenWith(policies: string[], meta?: Record<string, string>): Promise<string> {
  const r = await t.call('update', 'auth/token/create', { policies, ...(meta ? { meta } : {}) });
  assert.equal(r.status, 200, r.error?.message);
  return r.response!.auth!.client_token;
}

/** Reads secret/data/<path> as `token` (from `ip`); a 200 must carry the secret. */
async function read(token: string, path: string, ip = '127.0.0.1') {
  const req = request('read', `secret/data/${path}`, {}, token);
  req.client.address = ip;
  const r = await t.core.handle(req);
  if (r.status === 200) assert.deepEqual((r.response!.data as { data: unknown }).data, { value: path });
  return r;
}

async function status(token: string, path: string, ip?: string): Promise<number> {
  return (await read(token, path, ip)).status;
}

describe('policy CRUD (sys/policies/cedar/:name)', () => {
  it('writes, reads, lists, overwrites and deletes a policy', async () => {
    const text = '@id("r") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/crud/");';
    assert.ok(!(await listPolicies()).includes('crud'));
    await writePolicy('crud', text);

    const r = await t.call('read', 'sys/policies/cedar/crud');
    assert.equal(r.status, 200, r.error?.message);
    const d = r.response!.data!;
    assert.equal(d.name, 'crud');
    assert.equal(d.policy, text);
    assert.equal(d.builtin, false);
    assert.equal(typeof d.created, 'string');
    assert.ok((await listPolicies()).includes('crud'));

    const text2 = text.replace('crud', 'crud2');
    await writePolicy('crud', text2);
    const r2 = await t.call('read', 'sys/policies/cedar/crud');
    assert.equal(r2.response!.data!.policy, text2);
    assert.equal(r2.response!.data!.created, d.created, 'an overwrite keeps the creation time');

    await deletePolicy('crud');
    assert.equal((await t.call('read', 'sys/policies/cedar/crud')).status, 404);
    assert.ok(!(await listPolicies()).includes('crud'));
    const again = await t.call('delete', 'sys/policies/cedar/crud');
    assert.equal(again.status, 404);
    assert.match(again.error!.message, /no policy named "crud"/);
  });

  it('lists the built-in root and default policies', async () => {
    const keys = await listPolicies();
    assert.ok(keys.includes('root') && keys.includes('default'));
    const root = await t.call('read', 'sys/policies/cedar/root');
    assert.equal(root.response!.data!.policy, ROOT_POLICY);
    assert.equal(root.response!.data!.builtin, true);
  });

  it('a write without policy text or with a bad name is refused', async () => {
    const missing = await t.call('update', 'sys/policies/cedar/empty', {});
    assert.equal(missing.status, 400);
    assert.match(missing.error!.message, /policy is required/);
    const badName = await t.call('update', 'sys/policies/cedar/bad%20name', { policy: ROOT_POLICY });
    assert.equal(badName.status, 400);
    assert.match(badName.error!.message, /policy name/);
  });
});

describe('invalid policies are refused with Cedar\'s message and nothing is stored', () => {
  const cases: [string, string, RegExp][] = [
    ['a syntax error', 'permit (principal, action, resource', /does not parse: .*unexpected end of input/],
    ['an unknown action', 'permit (principal, action == Aegis::Action::"reed", resource);', /unrecognized action `Aegis::Action::"reed"`/],
    ['an attribute not in the schema', 'permit (principal, action, resource) when { resource.owner == "me" };', /attribute `owner` on entity type `Aegis::Path` not found/],
    ['an unknown entity type', 'permit (principal == Aegis::User::"bob", action, resource);', /does not validate against the Aegis schema: .*Aegis::User/],
    ['a tag read without hasTag', 'permit (principal, action, resource) when { principal.getTag("team") == "x" };', /does not validate against the Aegis schema: .*tag/],
    ['a context field not in the schema', 'permit (principal, action, resource) when { context.mfa == true };', /does not validate against the Aegis schema: .*mfa/],
    ['a template', 'permit (principal == ?principal, action, resource);', /template/],
    ['an empty document', '// nothing here\n', /empty/],
    ['two statements with the same @id', '@id("a") permit (principal, action, resource);\n@id("a") forbid (principal, action, resource);', /two statements share @id\("a"\)/],
  ];
  for (const [what, text, message] of cases) {
    it(`${what} is refused (400) and not stored`, async () => {
      const before = await listPolicies();
      const r = await t.call('update', 'sys/policies/cedar/invalid', { policy: text });
      assert.equal(r.status, 400, `${what}: got ${r.status}`);
      assert.match(r.error!.message, /^policy invalid[ :]/);
      assert.match(r.error!.message, message);
      assert.equal((await t.call('read', 'sys/policies/cedar/invalid')).status, 404);
      assert.deepEqual(await listPolicies(), before);
    });
  }

  it('an invalid document is refused as a whole: its valid statements do not take effect', async () => {
    const tok = await tokenWith(['half-valid']);
    const text = '@id("ok") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/team-b/");\n'
      + '@id("bad") permit (principal, action == Aegis::Action::"reed", resource);';
    const r = await t.call('update', 'sys/policies/cedar/half-valid', { policy: text });
    assert.equal(r.status, 400);
    assert.equal(await status(tok, 'team-b/x'), 403);
  });

  it('an invalid overwrite leaves the stored version in force', async () => {
    const good = '@id("team-b") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/team-b/");';
    await writePolicy('overwritten', good);
    const tok = await tokenWith(['overwritten']);
    assert.equal(await status(tok, 'team-b/x'), 200);
    const r = await t.call('update', 'sys/policies/cedar/overwritten', { policy: 'forbid (principal, action, resource' });
    assert.equal(r.status, 400);
    assert.equal((await t.call('read', 'sys/policies/cedar/overwritten')).response!.data!.policy, good);
    assert.equal(await status(tok, 'team-b/x'), 200);
  });
});

describe('built-in policies', () => {
  it('root cannot be changed or deleted (nobody can weaken or hijack the root policy)', async () => {
    const w = await t.call('update', 'sys/policies/cedar/root', { policy: 'forbid (principal, action, resource);' });
    assert.equal(w.status, 400);
    assert.match(w.error!.message, /root policy cannot be changed/);
    const upper = await t.call('update', 'sys/policies/cedar/ROOT', { policy: 'forbid (principal, action, resource);' });
    assert.equal(upper.status, 400);
    const d = await t.call('delete', 'sys/policies/cedar/root');
    assert.equal(d.status, 400);
    assert.match(d.error!.message, /root policy cannot be deleted/);
    assert.equal((await t.call('read', 'sys/policies/cedar/root')).response!.data!.policy, ROOT_POLICY);
    // Root still does everything.
    assert.equal((await read(t.rootToken, 'prod/db')).status, 200);
  });

  it('default cannot be deleted', async () => {
    const d = await t.call('delete', 'sys/policies/cedar/default');
    assert.equal(d.status, 400);
    assert.match(d.error!.message, /default policy cannot be deleted/);
    assert.ok((await listPolicies()).includes('default'));
    const tok = await tokenWith([]);
    assert.equal((await t.call('read', 'auth/token/lookup-self', {}, tok)).status, 200);
  });
});

describe('Cedar authorization', () => {
  it('default deny: a token whose policies permit nothing on a path is refused, and told no policy permits it', async () => {
    await writePolicy('elsewhere', '@id("x") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/somewhere-else/");');
    const tok = await tokenWith(['elsewhere']);
    const r = await read(tok, 'team-a/x');
    assert.equal(r.status, 403);
    assert.equal(r.error!.message, 'permission denied: no policy of this token (default, elsewhere) permits read on secret/data/team-a/x');
    // Every other action is denied too.
    const w = await t.call('update', 'secret/data/team-a/x', { data: { value: 'overwritten' } }, tok);
    assert.equal(w.status, 403);
    assert.match(w.error!.message, /no policy of this token .* permits update on secret\/data\/team-a\/x/);
  });

  it('resource in Aegis::Path::"secret/data/team-a/" grants that subtree only (not team-b, nor a look-alike prefix)', async () => {
    await writePolicy('team-a', '@id("read-team-a") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/team-a/");');
    const tok = await tokenWith(['team-a']);
    assert.equal(await status(tok, 'team-a/x'), 200);
    assert.equal(await status(tok, 'team-a/deep/y'), 200);
    assert.equal(await status(tok, 'team-b/x'), 403);
    assert.equal(await status(tok, 'team-a-evil/x'), 403, 'a string-prefix match would leak team-a-evil/');
    // The grant is read only.
    const w = await t.call('update', 'secret/data/team-a/x', { data: { value: 'changed' } }, tok);
    assert.equal(w.status, 403);
  });

  it('a forbid overrides a permit, and the 403 names the forbidding policy and rule', async () => {
    await writePolicy('all-secrets', '@id("read-secrets") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/");');
    await writePolicy('no-prod', '@id("never-prod") forbid (principal, action, resource in Aegis::Path::"secret/data/prod/");');
    const tok = await tokenWith(['all-secrets', 'no-prod']);
    assert.equal(await status(tok, 'dev/db'), 200);
    const r = await read(tok, 'prod/db');
    assert.equal(r.status, 403);
    assert.equal(r.error!.message, 'permission denied: read on secret/data/prod/db is forbidden by no-prod/never-prod');

    // Within one document too; a statement without @id is named by its position.
    await writePolicy('mixed', 'permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/");\n'
      + 'forbid (principal, action, resource == Aegis::Path::"secret/data/dev/db");');
    const tok2 = await tokenWith(['mixed']);
    assert.equal(await status(tok2, 'prod/db'), 200);
    const r2 = await read(tok2, 'dev/db');
    assert.equal(r2.status, 403);
    assert.match(r2.error!.message, /forbidden by mixed\/2$/);
  });

  it('a policy applies only to tokens that carry it: another document\'s statements neither grant nor forbid', async () => {
    // `principal` is unconstrained in both statements; they still govern only tokens holding their policy.
    await writePolicy('wide-open', '@id("everything") permit (principal, action, resource);');
    await writePolicy('lockdown', '@id("nothing") forbid (principal, action, resource);');
    await writePolicy('team-b', '@id("read-team-b") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/team-b/");');
    const tok = await tokenWith(['team-b']);
    assert.equal(await status(tok, 'team-b/x'), 200, 'lockdown must not affect a token without it');
    assert.equal(await status(tok, 'prod/db'), 403, 'wide-open must not grant a token without it');

    const wide = await tokenWith(['wide-open']);
    assert.equal(await status(wide, 'prod/db'), 200);
    const locked = await tokenWith(['team-b', 'lockdown']);
    const r = await read(locked, 'team-b/x');
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /forbidden by lockdown\/nothing/);
  });

  it('a condition can compare a path segment tag with a token meta tag (team-scoped access)', async () => {
    await writePolicy('team-scope', `@id("own-team")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/")
when { resource.hasTag("2") && principal.hasTag("team") && resource.getTag("2") == principal.getTag("team") };`);
    const alpha = await tokenWith(['team-scope'], { team: 'alpha' });
    const beta = await tokenWith(['team-scope'], { team: 'beta' });
    const none = await tokenWith(['team-scope']);
    assert.equal(await status(alpha, 'alpha/x'), 200);
    assert.equal(await status(alpha, 'beta/x'), 403);
    assert.equal(await status(beta, 'beta/x'), 200);
    assert.equal(await status(beta, 'alpha/x'), 403);
    const r = await read(none, 'alpha/x');
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /no policy of this token .* permits read/);
  });

  it('a condition on context.client_ip admits only the given network', async () => {
    await writePolicy('loopback-only', `@id("loopback")
permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/net/")
when { context.client_ip.isInRange(ip("127.0.0.0/8")) };`);
    const tok = await tokenWith(['loopback-only']);
    assert.equal(await status(tok, 'net/x', '127.0.0.1'), 200);
    assert.equal(await status(tok, 'net/x', '127.8.9.10'), 200);
    assert.equal(await status(tok, 'net/x', '::ffff:127.0.0.1'), 200, 'an IPv4-mapped IPv6 loopback is loopback');
    assert.equal(await status(tok, 'net/x', '10.0.0.5'), 403);
    assert.equal(await status(tok, 'net/x', '::1'), 403);
    assert.equal(await status(tok, 'net/x', 'not-an-ip'), 403);
  });

  it('create vs update follows the route\'s existence check: a create-only grant cannot overwrite', async () => {
    await writePolicy('drop-box', '@id("create") permit (principal, action == Aegis::Action::"create", resource in Aegis::Path::"secret/data/drop/");');
    const tok = await tokenWith(['drop-box']);
    const first = await t.call('update', 'secret/data/drop/a', { data: { v: '1' } }, tok);
    assert.equal(first.status, 200, first.error?.message);
    const second = await t.call('update', 'secret/data/drop/a', { data: { v: '2' } }, tok);
    assert.equal(second.status, 403);
    assert.match(second.error!.message, /permits update on secret\/data\/drop\/a/);
    const stored = await t.call('read', 'secret/data/drop/a');
    assert.deepEqual((stored.response!.data as { data: unknown }).data, { v: '1' });
  });
});

describe('the decision cache follows policy changes', () => {
  it('a denied token is allowed on the very next request after a permitting policy is written, and denied again once it is deleted', async () => {
    const tok = await tokenWith(['late']); // the policy does not exist yet
    assert.equal(await status(tok, 'late/x'), 403);
    assert.equal(await status(tok, 'late/x'), 403); // now certainly cached
    await writePolicy('late', '@id("late") permit (principal, action == Aegis::Action::"read", resource == Aegis::Path::"secret/data/late/x");');
    assert.equal(await status(tok, 'late/x'), 200);
    await deletePolicy('late');
    assert.equal(await status(tok, 'late/x'), 403);
  });

  it('narrowing a policy takes a cached allow away at once', async () => {
    await writePolicy('narrowing', '@id("wide") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/cache/");');
    const tok = await tokenWith(['narrowing']);
    assert.equal(await status(tok, 'cache/x'), 200);
    assert.equal(await status(tok, 'cache/x'), 200);
    await writePolicy('narrowing', '@id("narrow") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/team-b/");');
    assert.equal(await status(tok, 'cache/x'), 403);
    assert.equal(await status(tok, 'team-b/x'), 200);
    // Adding a forbid elsewhere also drops the cache.
    await writePolicy('narrowing-forbid', '@id("no-team-b") forbid (principal, action, resource in Aegis::Path::"secret/data/team-b/");');
    const both = await tokenWith(['narrowing', 'narrowing-forbid']);
    assert.equal(await status(both, 'team-b/x'), 403);
    await deletePolicy('narrowing-forbid');
    assert.equal(await status(both, 'team-b/x'), 200);
  });

  it('editing the default policy takes effect for every token at once', async () => {
    const tok = await tokenWith([]);
    assert.equal(await status(tok, 'shared/x'), 403);
    try {
      await writePolicy('default', `${DEFAULT_POLICY}\n@id("shared") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/shared/");\n`);
      assert.equal(await status(tok, 'shared/x'), 200);
      const read2 = await t.call('read', 'sys/policies/cedar/default');
      assert.match(read2.response!.data!.policy as string, /@id\("shared"\)/);
      assert.equal(read2.response!.data!.builtin, true);
      // A token without default is not affected.
      const r = await t.call('update', 'auth/token/create', { policies: ['team-b'], no_default_policy: true });
      assert.equal(await status(r.response!.auth!.client_token, 'shared/x'), 403);
    } finally {
      await writePolicy('default', DEFAULT_POLICY);
    }
    assert.equal(await status(tok, 'shared/x'), 403);
    assert.equal((await t.call('read', 'auth/token/lookup-self', {}, tok)).status, 200);
  });
});

describe('sys/capabilities-self', () => {
  it('lists what the caller may do on a path, and deny where nothing is permitted', async () => {
    await writePolicy('caps', `@id("rl") permit (principal, action in [Aegis::Action::"read", Aegis::Action::"list"], resource in Aegis::Path::"secret/data/caps/");
@id("no-secret-list") forbid (principal, action == Aegis::Action::"list", resource == Aegis::Path::"secret/data/caps/hidden");`);
    const tok = await tokenWith(['caps']);
    const one = await t.call('update', 'sys/capabilities-self', { path: 'secret/data/caps/x' }, tok);
    assert.equal(one.status, 200, one.error?.message);
    assert.deepEqual(one.response!.data!.capabilities, ['read', 'list']);

    const many = await t.call('update', 'sys/capabilities-self', { paths: ['secret/data/caps/hidden', 'secret/data/other'] }, tok);
    assert.equal(many.status, 200, many.error?.message);
    assert.deepEqual(many.response!.data!['secret/data/caps/hidden'], ['read']);
    assert.deepEqual(many.response!.data!['secret/data/other'], ['deny']);

    const root = await t.call('update', 'sys/capabilities-self', { path: 'secret/data/caps/x' });
    assert.deepEqual(root.response!.data!.capabilities, ['read', 'create', 'update', 'delete', 'list', 'sudo']);

    const none = await t.call('update', 'sys/capabilities-self', {}, tok);
    assert.equal(none.status, 400);
  });
});

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { AuthResult } from '../../src/core/request.js';
import { makeCore, request, type TestCore } from '../helpers/core.js';
import { startTestServer, type InProcessServer } from '../helpers/server.js';

// Policies used by the tokens below. Each grants exactly what its name says and nothing else.
const POLICIES: Record<string, string> = {
  // May create child tokens (auth/token/create, update).
  minter: '@id("create") permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"auth/token/create");',
  // Adds sudo on auth/token/create: what an orphan (no_parent) needs from a non-root token.
  'orphan-maker': '@id("sudo-create") permit (principal, action == Aegis::Action::"sudo", resource == Aegis::Path::"auth/token/create");',
  app: '@id("read-app") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/app/");',
  'list-accessors': '@id("list") permit (principal, action == Aegis::Action::"list", resource == Aegis::Path::"auth/token/accessors/");',
  'sudo-accessors': '@id("sudo") permit (principal, action == Aegis::Action::"sudo", resource == Aegis::Path::"auth/token/accessors/");',
  'orphan-revoker': '@id("revoke-orphan") permit (principal, action == Aegis::Action::"update", resource == Aegis::Path::"auth/token/revoke-orphan");',
};

let t: TestCore;

before(async () => {
  t = await makeCore();
  for (const [name, text] of Object.entries(POLICIES)) {
    const r = await t.call('update', `sys/policies/cedar/${name}`, { policy: text });
    assert.equal(r.status, 204, `policy ${name}: ${r.error?.message}`);
  }
  const w = await t.call('update', 'secret/data/app/config', { data: { db: 'postgres://app' } });
  assert.equal(w.status, 200, w.error?.message);
});

/** Reads secret/data/app/config (granted by the `app` policy) with `token`; returns the status. */
async function readSecret(token: string): Promise<number> {
  return (await t.call('read', 'secret/data/app/config', {}, token)).status;
}

/** Creates a token as `as` (root by default) and returns the raw result. */
function create(data: Record<string, unknown>, as?: string) {
  return t.call('update', 'auth/token/create', data, as);
}

/** Creates a token that must succeed; returns its auth block. */
async function mint(data: Record<string, unknown>, as?: string): Promise<AuthResult> {
  const r = await create(data, as);
  assert.equal(r.status, 200, `token create failed: ${r.status} ${r.error?.message}`);
  const auth = r.response?.auth;
  assert.ok(auth, 'token create returned no auth block');
  return auth;
}

/** Whether `token` currently authenticates (lookup-self is allowed by the default policy). */
async function works(token: string): Promise<boolean> {
  const r = await t.call('read', 'auth/token/lookup-self', {}, token);
  if (r.status === 200) return true;
  assert.equal(r.status, 403, `unexpected status ${r.status}: ${r.error?.message}`);
  return false;
}

/** What root sees of a token by its ID (200) or the error. */
function lookup(token: string) {
  return t.call('update', 'auth/token/lookup', { token });
}

async function accessorList(): Promise<string[]> {
  const r = await t.call('list', 'auth/token/accessors/');
  assert.equal(r.status, 200, r.error?.message);
  return (r.response!.data as { keys: string[] }).keys;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sorted(list: readonly string[]): string[] {
  return [...list].sort();
}

describe('token creation', () => {
  it('a created token carries the requested policies, ttl, explicit_max_ttl, num_uses, renewable, meta and display_name', async () => {
    const auth = await mint({
      policies: ['app', 'minter'], ttl: '1h', explicit_max_ttl: '2h', num_uses: 5, renewable: true,
      meta: { team: 'alpha', env: 'prod' }, display_name: 'ci',
    });
    assert.match(auth.client_token, /^aegis\./);
    assert.ok(auth.accessor.length > 0);
    assert.notEqual(auth.accessor, auth.client_token);
    assert.deepEqual(sorted(auth.policies), ['app', 'default', 'minter']);
    assert.ok(auth.lease_duration > 3590 && auth.lease_duration <= 3600, `lease_duration ${auth.lease_duration}`);
    assert.equal(auth.renewable, true);
    assert.equal(auth.num_uses, 5);
    assert.equal(auth.orphan, false);
    assert.deepEqual(auth.metadata, { team: 'alpha', env: 'prod' });

    const l = await lookup(auth.client_token);
    assert.equal(l.status, 200, l.error?.message);
    const d = l.response!.data!;
    assert.equal(d.id, auth.client_token);
    assert.equal(d.accessor, auth.accessor);
    assert.equal(d.display_name, 'token-ci');
    assert.equal(d.explicit_max_ttl, 7200);
    assert.equal(d.num_uses, 5);
    assert.equal(d.renewable, true);
    assert.deepEqual(d.meta, { team: 'alpha', env: 'prod' });
    assert.deepEqual(sorted(d.policies as string[]), ['app', 'default', 'minter']);
    assert.ok((d.ttl as number) > 3590 && (d.ttl as number) <= 3600, `ttl ${String(d.ttl)}`);
    assert.equal(typeof d.expire_time, 'string');

    // The token authenticates, and using it takes one of its uses.
    const self = await t.call('read', 'auth/token/lookup-self', {}, auth.client_token);
    assert.equal(self.status, 200, self.error?.message);
    assert.equal(self.response!.data!.num_uses, 4);
    assert.equal(self.response!.data!.accessor, auth.accessor);
  });

  it('the default policy is attached unless no_default_policy is set', async () => {
    const withDefault = await mint({ policies: ['app'] });
    assert.deepEqual(sorted(withDefault.policies), ['app', 'default']);
    assert.equal(await works(withDefault.client_token), true);

    const without = await mint({ policies: ['app'], no_default_policy: true });
    assert.deepEqual(without.policies, ['app']);
    // Without `default` the token may not even look itself up.
    const self = await t.call('read', 'auth/token/lookup-self', {}, without.client_token);
    assert.equal(self.status, 403);
    assert.match(self.error!.message, /no policy of this token \(app\) permits read on auth\/token\/lookup-self/);
  });

  it('ttl is capped by explicit_max_ttl at creation', async () => {
    const auth = await mint({ ttl: '2h', explicit_max_ttl: '10m' });
    assert.ok(auth.lease_duration > 590 && auth.lease_duration <= 600, `lease_duration ${auth.lease_duration}`);
  });

  it('a child token never outlives its parent', async () => {
    const parent = await mint({ policies: ['minter'], ttl: '60s' });
    const child = await mint({ ttl: '1h' }, parent.client_token);
    assert.ok(child.lease_duration <= 60, `child lease ${child.lease_duration} exceeds its parent's 60s`);
  });

  it('a child token cannot be granted a policy its parent lacks (privilege escalation)', async () => {
    const parent = await mint({ policies: ['minter', 'app'] });
    const before = t.core.tokens.tokenCount;
    const r = await create({ policies: ['app', 'list-accessors'] }, parent.client_token);
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /subset of its parent's; not held: list-accessors/);
    assert.equal(t.core.tokens.tokenCount, before, 'a refused create must not store a token');

    const child = await mint({ policies: ['app'] }, parent.client_token);
    assert.deepEqual(sorted(child.policies), ['app', 'default']);
    // Without `policies`, a child inherits its parent's.
    const inherited = await mint({}, parent.client_token);
    assert.deepEqual(sorted(inherited.policies), ['app', 'default', 'minter']);
  });

  it('a non-root token cannot mint a root token', async () => {
    const parent = await mint({ policies: ['minter'] });
    const before = t.core.tokens.tokenCount;
    for (const data of [{ policies: ['root'] }, { policies: ['ROOT'] }, { policies: ['minter', 'root'], no_default_policy: true }]) {
      const r = await create(data, parent.client_token);
      assert.equal(r.status, 403, `create ${JSON.stringify(data)} should be refused`);
      assert.match(r.error!.message, /root/);
    }
    assert.equal(t.core.tokens.tokenCount, before);
    // Root itself may.
    const rootChild = await mint({ policies: ['root'] });
    assert.deepEqual(rootChild.policies, ['root']);
  });

  it('only a root token may choose a token ID (squatting a known or guessable ID)', async () => {
    const parent = await mint({ policies: ['minter'] });
    const denied = await create({ id: 'chosen-by-child' }, parent.client_token);
    assert.equal(denied.status, 403);
    assert.match(denied.error!.message, /only a root token may choose a token ID/);
    assert.equal(await works('chosen-by-child'), false);

    const chosen = await mint({ id: 'chosen-by-root.1', policies: ['app'] });
    assert.equal(chosen.client_token, 'chosen-by-root.1');
    assert.equal(await works('chosen-by-root.1'), true);

    const dup = await create({ id: 'chosen-by-root.1' });
    assert.equal(dup.status, 400);
    assert.match(dup.error!.message, /already exists/);
    const badChars = await create({ id: 'has space' });
    assert.equal(badChars.status, 400);
    assert.match(badChars.error!.message, /id/);
  });

  it('an orphan (no_parent) needs root or sudo: a plain child cannot escape its parent\'s revocation', async () => {
    const plain = await mint({ policies: ['minter'] });
    const before = t.core.tokens.tokenCount;
    const denied = await create({ no_parent: true }, plain.client_token);
    assert.equal(denied.status, 403);
    assert.match(denied.error!.message, /no_parent.*sudo/);
    assert.equal(t.core.tokens.tokenCount, before);

    const normal = await mint({}, plain.client_token);
    assert.equal(normal.orphan, false);

    const sudoer = await mint({ policies: ['minter', 'orphan-maker'] });
    const orphan = await mint({ no_parent: true }, sudoer.client_token);
    assert.equal(orphan.orphan, true);

    const fromRoot = await mint({ no_parent: true });
    assert.equal(fromRoot.orphan, true);
  });
});

describe('token revocation', () => {
  it('revoking a token revokes its children and grandchildren, and nothing else', async () => {
    const parent = await mint({ policies: ['minter'] });
    const child = await mint({}, parent.client_token);
    const grandchild = await mint({}, child.client_token);
    const bystander = await mint({ policies: ['minter'] });
    for (const tok of [parent, child, grandchild, bystander]) assert.equal(await works(tok.client_token), true);

    const r = await t.call('update', 'auth/token/revoke', { token: parent.client_token });
    assert.equal(r.status, 204, r.error?.message);
    assert.equal(await works(parent.client_token), false);
    assert.equal(await works(child.client_token), false);
    assert.equal(await works(grandchild.client_token), false);
    assert.equal(await works(bystander.client_token), true);
    assert.ok(!(await accessorList()).includes(grandchild.accessor));
  });

  it('revoke-orphan revokes only the token: its children live on as orphans', async () => {
    const parent = await mint({ policies: ['minter'] });
    const child = await mint({}, parent.client_token);
    const grandchild = await mint({}, child.client_token);

    const r = await t.call('update', 'auth/token/revoke-orphan', { token: parent.client_token });
    assert.equal(r.status, 204, r.error?.message);
    assert.equal(await works(parent.client_token), false);
    assert.equal(await works(child.client_token), true);
    assert.equal(await works(grandchild.client_token), true);
    assert.equal((await lookup(child.client_token)).response!.data!.orphan, true);
    assert.equal((await lookup(grandchild.client_token)).response!.data!.orphan, false);

    // The subtree under the new orphan is intact: revoking it still takes the grandchild.
    assert.equal((await t.call('update', 'auth/token/revoke', { token: child.client_token })).status, 204);
    assert.equal(await works(grandchild.client_token), false);
  });

  it('revoke-orphan needs sudo as well as update on its path', async () => {
    const caller = await mint({ policies: ['orphan-revoker'] });
    const victim = await mint({ policies: ['minter'] });
    const r = await t.call('update', 'auth/token/revoke-orphan', { token: victim.client_token }, caller.client_token);
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /also needs the sudo action/);
    assert.equal(await works(victim.client_token), true);
  });

  it('revoke-self revokes the calling token and its children', async () => {
    const parent = await mint({ policies: ['minter'] });
    const child = await mint({}, parent.client_token);
    const r = await t.call('update', 'auth/token/revoke-self', {}, parent.client_token);
    assert.equal(r.status, 204, r.error?.message);
    assert.equal(await works(parent.client_token), false);
    assert.equal(await works(child.client_token), false);
  });

  it('revoke-accessor revokes the token the accessor names, with its children', async () => {
    const parent = await mint({ policies: ['minter'] });
    const child = await mint({}, parent.client_token);
    const r = await t.call('update', 'auth/token/revoke-accessor', { accessor: parent.accessor });
    assert.equal(r.status, 204, r.error?.message);
    assert.equal(await works(parent.client_token), false);
    assert.equal(await works(child.client_token), false);
    const again = await t.call('update', 'auth/token/revoke-accessor', { accessor: parent.accessor });
    assert.equal(again.status, 400);
    assert.match(again.error!.message, /accessor not found/);
  });
});

describe('token lookup', () => {
  it('lookup, lookup-self and lookup-accessor describe the same token', async () => {
    const auth = await mint({ policies: ['app'], meta: { team: 'beta' }, display_name: 'svc' });
    const byId = await lookup(auth.client_token);
    const self = await t.call('read', 'auth/token/lookup-self', {}, auth.client_token);
    const byAccessor = await t.call('update', 'auth/token/lookup-accessor', { accessor: auth.accessor });
    for (const r of [byId, self, byAccessor]) {
      assert.equal(r.status, 200, r.error?.message);
      const d = r.response!.data!;
      assert.equal(d.accessor, auth.accessor);
      assert.equal(d.display_name, 'token-svc');
      assert.deepEqual(d.meta, { team: 'beta' });
      assert.deepEqual(sorted(d.policies as string[]), ['app', 'default']);
    }
    assert.equal(byId.response!.data!.id, auth.client_token);
    assert.equal(self.response!.data!.id, auth.client_token);
  });

  it('lookup-accessor never reveals the token ID (an accessor is not a credential)', async () => {
    const auth = await mint({ policies: ['app'] });
    const r = await t.call('update', 'auth/token/lookup-accessor', { accessor: auth.accessor });
    assert.equal(r.status, 200, r.error?.message);
    assert.equal(r.response!.data!.id, '');
    assert.ok(!JSON.stringify(r.response).includes(auth.client_token), 'the token ID leaked in a lookup-accessor response');
  });

  it('looking up an unknown token or accessor is refused with a message', async () => {
    const r = await lookup('aegis.not-a-real-token');
    assert.equal(r.status, 400);
    assert.match(r.error!.message, /token not found/);
    const a = await t.call('update', 'auth/token/lookup-accessor', { accessor: 'nope' });
    assert.equal(a.status, 400);
    assert.match(a.error!.message, /accessor not found/);
  });
});

describe('token renewal', () => {
  it('renew extends a token\'s life and explicit_max_ttl caps it', async () => {
    const auth = await mint({ ttl: '60s', explicit_max_ttl: '1h' });
    assert.ok(auth.lease_duration <= 60);

    const r1 = await t.call('update', 'auth/token/renew-self', { increment: '10m' }, auth.client_token);
    assert.equal(r1.status, 200, r1.error?.message);
    assert.ok(r1.response!.auth!.lease_duration > 590 && r1.response!.auth!.lease_duration <= 600, `lease ${r1.response!.auth!.lease_duration}`);
    const ttl1 = (await lookup(auth.client_token)).response!.data!.ttl as number;
    assert.ok(ttl1 > 590 && ttl1 <= 600, `ttl after renew ${ttl1}`);

    // Asking for more than explicit_max_ttl allows gets only up to the cap, by any of the three renew paths.
    const r2 = await t.call('update', 'auth/token/renew', { token: auth.client_token, increment: '5h' });
    assert.equal(r2.status, 200, r2.error?.message);
    assert.ok(r2.response!.auth!.lease_duration > 3590 && r2.response!.auth!.lease_duration <= 3600, `lease ${r2.response!.auth!.lease_duration}`);
    const r3 = await t.call('update', 'auth/token/renew-accessor', { accessor: auth.accessor, increment: '24h' });
    assert.equal(r3.status, 200, r3.error?.message);
    assert.ok(r3.response!.auth!.lease_duration <= 3600, `lease ${r3.response!.auth!.lease_duration}`);
    assert.equal(r3.response!.auth!.client_token, '', 'renew-accessor must not return the token ID');
    const ttl3 = (await lookup(auth.client_token)).response!.data!.ttl as number;
    assert.ok(ttl3 > 3590 && ttl3 <= 3600, `ttl after capped renew ${ttl3}`);
  });

  it('renew without explicit_max_ttl can extend beyond the initial ttl', async () => {
    const auth = await mint({ ttl: '60s' });
    const r = await t.call('update', 'auth/token/renew-self', { increment: '2h' }, auth.client_token);
    assert.equal(r.status, 200, r.error?.message);
    assert.ok(r.response!.auth!.lease_duration > 7190 && r.response!.auth!.lease_duration <= 7200, `lease ${r.response!.auth!.lease_duration}`);
  });

  it('renewing a non-renewable token is refused and leaves its expiry alone', async () => {
    const auth = await mint({ ttl: '60s', renewable: false });
    assert.equal(auth.renewable, false);
    const r = await t.call('update', 'auth/token/renew-self', { increment: '1h' }, auth.client_token);
    assert.equal(r.status, 400);
    assert.match(r.error!.message, /not renewable/);
    const ttl = (await lookup(auth.client_token)).response!.data!.ttl as number;
    assert.ok(ttl <= 60, `ttl ${ttl}`);
  });
});

describe('token expiry', () => {
  it('an expired token is refused and lookup reports it gone', async () => {
    const auth = await mint({ ttl: '1s', policies: ['app'] });
    assert.equal(await works(auth.client_token), true);
    await sleep(1100); // the one place time must pass
    const r = await t.call('read', 'auth/token/lookup-self', {}, auth.client_token);
    assert.equal(r.status, 403);
    assert.match(r.error!.message, /invalid token/);
    const l = await lookup(auth.client_token);
    assert.equal(l.status, 400);
    assert.match(l.error!.message, /token not found: it is unknown, expired or revoked/);
    const a = await t.call('update', 'auth/token/lookup-accessor', { accessor: auth.accessor });
    assert.equal(a.status, 400);
  });
});

describe('limited-use tokens (num_uses)', () => {
  it('a token with num_uses 3 works exactly 3 times (no replay past its uses)', async () => {
    const auth = await mint({ num_uses: 3, policies: ['app'] });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await readSecret(auth.client_token));
    assert.deepEqual(statuses, [200, 200, 200, 403, 403]);
    const l = await lookup(auth.client_token);
    assert.equal(l.status, 400, 'a used-up token must be gone');
  });

  it('of 10 concurrent requests with a num_uses=2 token exactly 2 succeed (no race grants extra uses)', async () => {
    for (let round = 0; round < 3; round++) {
      const auth = await mint({ num_uses: 2, policies: ['app'] });
      const results = await Promise.all(Array.from({ length: 10 }, () => t.call('read', 'secret/data/app/config', {}, auth.client_token)));
      const ok = results.filter((r) => r.status === 200).length;
      const denied = results.filter((r) => r.status === 403);
      assert.equal(ok, 2, `round ${round}: ${results.map((r) => r.status).join(',')}`);
      assert.equal(denied.length, 8);
      for (const d of denied) assert.match(d.error!.message, /invalid token/);
      assert.equal(await works(auth.client_token), false);
    }
  });
});

describe('accessor listing', () => {
  it('listing accessors needs sudo as well as list (enumerating every token is privileged)', async () => {
    const listOnly = await mint({ policies: ['list-accessors'] });
    const denied = await t.call('list', 'auth/token/accessors/', {}, listOnly.client_token);
    assert.equal(denied.status, 403);
    assert.match(denied.error!.message, /auth\/token\/accessors\/ also needs the sudo action/);

    const sudoOnly = await mint({ policies: ['sudo-accessors'] });
    const deniedToo = await t.call('list', 'auth/token/accessors/', {}, sudoOnly.client_token);
    assert.equal(deniedToo.status, 403);

    const both = await mint({ policies: ['list-accessors', 'sudo-accessors'] });
    const r = await t.call('list', 'auth/token/accessors/', {}, both.client_token);
    assert.equal(r.status, 200, r.error?.message);
    const keys = (r.response!.data as { keys: string[] }).keys;
    assert.ok(keys.includes(both.accessor) && keys.includes(listOnly.accessor));
    assert.equal(keys.length, t.core.tokens.tokenCount);
    assert.ok(!keys.includes(both.client_token));
  });
});

describe('token storage', () => {
  it('neither a token nor its accessor is ever stored in clear (a database dump gives no credential)', async () => {
    const tokens: AuthResult[] = [];
    tokens.push(await mint({ id: 'custom-token-id-must-not-be-stored', policies: ['minter'] }));
    tokens.push(await mint({ policies: ['minter'], meta: { team: 'storage' } }));
    tokens.push(await mint({}, tokens[1]!.client_token));
    tokens.push(await mint({ num_uses: 4 }));
    assert.equal(await works(tokens[3]!.client_token), true); // rewrites the entry (a use is taken)
    const secrets = [t.rootToken, ...tokens.flatMap((a) => [a.client_token, a.accessor])];

    const db = new Database(t.dbPath, { readonly: true, fileMustExist: true });
    let rows: { key: string; value: Buffer }[];
    let changeKeys: string[];
    try {
      rows = db.prepare('SELECT key, value, version FROM kv').all() as { key: string; value: Buffer }[];
      changeKeys = (db.prepare('SELECT key FROM changes').all() as { key: string }[]).map((r) => r.key);
    } finally {
      db.close();
    }
    // Sanity: this is the live database and the token entries are in it.
    assert.ok(rows.filter((r) => r.key.includes('token/id/')).length >= t.core.tokens.tokenCount, 'token entries not found in the kv table');
    for (const s of secrets) {
      const needle = Buffer.from(s);
      for (const r of rows) {
        assert.ok(!r.key.includes(s), `key ${r.key} contains a token or accessor`);
        assert.ok(Buffer.from(r.value).indexOf(needle) === -1, `value of ${r.key} contains a token or accessor in clear`);
      }
      for (const k of changeKeys) assert.ok(!k.includes(s), `change-feed key ${k} contains a token or accessor`);
      // The raw files too (WAL frames included): nothing escapes by a path the SQL view would not show.
      for (const file of [t.dbPath, `${t.dbPath}-wal`]) {
        if (existsSync(file)) assert.equal(readFileSync(file).indexOf(needle), -1, `${file} contains a token or accessor in clear`);
      }
    }
  });
});

describe('token create: bad input', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['ttl "banana"', { ttl: 'banana' }, /ttl.*not a duration/],
    ['num_uses -1', { num_uses: -1 }, /num_uses.*at least 0/],
    ['num_uses "many"', { num_uses: 'many' }, /num_uses.*whole number/],
    ['meta with a number value', { meta: { team: 1 } }, /meta/],
    ['meta with a nested object', { meta: { team: { a: 'b' } } }, /meta/],
    ['meta that is not an object', { meta: ['a'] }, /meta/],
    ['a policy name with a space and "!"', { policies: ['bad name!'] }, /policy name "bad name!"/],
    ['a policy name with a slash', { policies: ['app/../root'] }, /policy name/],
    ['explicit_max_ttl "-5s"', { explicit_max_ttl: '-5s' }, /explicit_max_ttl/],
    ['type "batch"', { type: 'batch' }, /service/],
  ];
  for (const [what, data, message] of cases) {
    it(`${what} is refused with 400 and a message, and no token is created`, async () => {
      const count = t.core.tokens.tokenCount;
      const accessors = (await accessorList()).length;
      const r = await create(data);
      assert.equal(r.status, 400, `${what}: got ${r.status}`);
      assert.match(r.error!.message, message);
      assert.equal(r.response, null);
      assert.equal(t.core.tokens.tokenCount, count);
      assert.equal((await accessorList()).length, accessors);
    });
  }
});

describe('tokens in the request pipeline', () => {
  it('a token is bound to nothing but its value: the client address does not matter for authentication', async () => {
    const auth = await mint({ policies: ['app'] });
    const req = request('read', 'auth/token/lookup-self', {}, auth.client_token);
    req.client.address = '10.9.8.7';
    const r = await t.core.handle(req);
    assert.equal(r.status, 200, r.error?.message);
  });
});

describe('tokens over HTTP', () => {
  let srv: InProcessServer;
  let token: AuthResult;

  before(async () => {
    srv = await startTestServer();
    const r = await srv.api('POST', 'auth/token/create', { body: { policies: ['default'], meta: { via: 'http' } } });
    assert.equal(r.status, 200, r.text);
    token = r.body.auth as AuthResult;
  });

  it('Authorization: Bearer <token> authenticates like X-Vault-Token', async () => {
    const viaHeader = await srv.api('GET', 'auth/token/lookup-self', { token: token.client_token });
    const viaBearer = await srv.api('GET', 'auth/token/lookup-self', { token: null, headers: { authorization: `Bearer ${token.client_token}` } });
    for (const r of [viaHeader, viaBearer]) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.data.accessor, token.accessor);
      assert.deepEqual(r.body.data.meta, { via: 'http' });
    }
  });

  it('a request without a token is refused with 403 and a message', async () => {
    const r = await srv.api('GET', 'auth/token/lookup-self', { token: null });
    assert.equal(r.status, 403);
    assert.match(r.body.errors[0], /missing client token/);
  });

  it('an unknown token is refused with 403 and a message, by either header', async () => {
    const a = await srv.api('GET', 'auth/token/lookup-self', { token: 'aegis.unknown' });
    const b = await srv.api('GET', 'auth/token/lookup-self', { token: null, headers: { authorization: 'Bearer aegis.unknown' } });
    for (const r of [a, b]) {
      assert.equal(r.status, 403);
      assert.match(r.body.errors[0], /invalid token/);
    }
  });

  it('a malformed Authorization header is not taken as a token', async () => {
    const r = await srv.api('GET', 'auth/token/lookup-self', { token: null, headers: { authorization: `Basic ${token.client_token}` } });
    assert.equal(r.status, 403);
    assert.match(r.body.errors[0], /missing client token/);
  });

  it('a revoked token is refused over HTTP', async () => {
    const c = await srv.api('POST', 'auth/token/create', { body: {} });
    const tok = c.body.auth.client_token as string;
    assert.equal((await srv.api('POST', 'auth/token/revoke-self', { token: tok })).status, 204);
    const r = await srv.api('GET', 'auth/token/lookup-self', { headers: { authorization: `Bearer ${tok}` }, token: null });
    assert.equal(r.status, 403);
    assert.match(r.body.errors[0], /invalid token/);
  });
});

describe('limited-use tokens and bad input', () => {
  it('a request refused for a malformed field does not consume a use', async () => {
    const t = await makeCore();
    const token = (await t.call('update', 'auth/token/create', { policies: ['root'], num_uses: 2 })).response!.auth!.client_token;
    const bad = await t.call('update', 'secret/data/x', { data: 'not-an-object' }, token);
    assert.equal(bad.status, 400);
    assert.equal((await t.call('update', 'secret/data/x', { data: { a: 1 } }, token)).status, 200);
    assert.equal((await t.call('read', 'secret/data/x', {}, token)).status, 200, 'both uses were still there');
    assert.equal((await t.call('read', 'secret/data/x', {}, token)).status, 403, 'and now they are gone');
  });
});

describe('accessor format', () => {
  it('accessors are 128-bit hex, so none can be mistaken for a command-line option', async () => {
    const t = await makeCore();
    const accessors = await Promise.all(Array.from({ length: 200 }, async () => (await t.call('update', 'auth/token/create', { policies: ['default'] })).response!.auth!.accessor));
    for (const a of accessors) assert.match(a, /^[0-9a-f]{32}$/);
    assert.equal(new Set(accessors).size, 200);
  });
});

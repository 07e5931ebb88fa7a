import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { SecureStore } from '../../src/core/barrier/index.js';
import { makeCore } from '../helpers/core.js';
import { startPostgres } from '../helpers/postgres.js';
import { fails, ok } from '../helpers/results.js';
import { eventually } from '../helpers/wait.js';

// Root rotation (with its write-ahead record) and static roles, against a real PostgreSQL. Each config connects
// as a superuser of its own, so rotating it never touches the harness's superuser or another test's root.
const db = await startPostgres();
const t = await makeCore();

const READONLY = [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`];

/** A database user made directly (a root for a config, or the user a static role manages). */
async function makeUser(name: string, superuser = false): Promise<string> {
  const password = `initial-${name}-Pw1`;
  await db.query(`CREATE ROLE ${pg.escapeIdentifier(name)} WITH LOGIN ${superuser ? 'SUPERUSER' : ''} PASSWORD ${pg.escapeLiteral(password)}`);
  return password;
}

/** A config `name` connecting as its own new superuser, with a role `<name>-app`; returns the root's password. */
async function configWithRoot(name: string, extra: Record<string, unknown> = {}): Promise<{ root: string; password: string }> {
  const root = `root_${name.replace(/-/g, '_')}`;
  const password = await makeUser(root, true);
  ok(await t.call('update', `database/config/${name}`, {
    plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${db.port}/postgres`,
    username: root, password, allowed_roles: '*', ...extra,
  }), `config ${name}`);
  ok(await t.call('update', `database/roles/${name}-app`, { db_name: name, creation_statements: READONLY, default_ttl: '10m' }), `role ${name}-app`);
  return { root, password };
}

/** The engine's storage (to look at what is stored, and to make it fail). */
const mountStore = (): SecureStore => t.core.router.get('database/')!.store;

async function storedRootPassword(name: string): Promise<string> {
  return (await mountStore().getJson<{ password: string }>(`config/${name}`))!.value.password;
}

/** Issues creds for `<name>-app`, checks they log in, and revokes them. */
async function credsWork(name: string): Promise<void> {
  const r = await t.call('read', `database/creds/${name}-app`);
  const d = ok(r, `creds for ${name}-app`);
  assert.equal(await db.login(d.username, d.password), true);
  ok(await t.call('update', 'sys/leases/revoke', { lease_id: r.response!.lease!.id }), 'revoke');
}

async function sealAndUnseal(whileSealed?: () => Promise<void>): Promise<void> {
  await t.core.sealNow();
  await whileSealed?.();
  await t.core.submitUnsealKey(t.keys[0]!.toString('hex'));
  assert.equal(t.core.barrier.sealed, false);
}

ok(await t.call('update', 'sys/mounts/database', { type: 'database' }), 'mount database/');

describe('rotate-root', () => {
  it('after rotation the old root password no longer logs in, only Aegis knows the new one, and creds still work', async () => {
    const { root, password } = await configWithRoot('rot');
    await credsWork('rot');
    ok(await t.call('update', 'database/rotate-root/rot'));
    assert.equal(await db.login(root, password), '28P01', 'the old root password is refused');
    const now = await storedRootPassword('rot');
    assert.notEqual(now, password);
    assert.match(now, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(await db.login(root, now), true);
    await credsWork('rot');
    assert.ok(!JSON.stringify(ok(await t.call('read', 'database/config/rot'))).includes(now), 'the new password is never returned');
    assert.deepEqual(await mountStore().list('root-rotation/'), [], 'no rotation record is left');
    // And again: each rotation replaces the one before.
    ok(await t.call('update', 'database/rotate-root/rot'));
    assert.equal(await db.login(root, now), '28P01');
    await credsWork('rot');
  });

  it('if storing the new password fails after the database took it, the root is not lost', async () => {
    const { root, password } = await configWithRoot('rot-store');
    const store = mountStore();
    const realTxn = store.txn.bind(store);
    let failing = true;
    // Storage refuses the write that would record the new root password (and any retry of it while `failing`).
    store.txn = async (ops) => {
      if (failing && ops.some((op) => op.type === 'put' && op.key === 'config/rot-store')) throw new Error('disk full');
      return realTxn(ops);
    };
    try {
      fails(await t.call('update', 'database/rotate-root/rot-store'), 500, /changed on the database but could not be stored; Aegis keeps using it/);
      assert.equal(await db.login(root, password), '28P01', 'the database has the new password');
      assert.equal(await storedRootPassword('rot-store'), password, 'storage still has the old one');
      assert.equal((await store.list('root-rotation/')).length, 1, 'the write-ahead record holds the new one');
      await credsWork('rot-store'); // from the password kept in memory
    } finally {
      failing = false;
      store.txn = realTxn;
    }
    // The next use stores it from the record.
    await credsWork('rot-store');
    const stored = await storedRootPassword('rot-store');
    assert.notEqual(stored, password);
    assert.equal(await db.login(root, stored), true);
    assert.deepEqual(await store.list('root-rotation/'), []);
    await sealAndUnseal();
    await credsWork('rot-store');
  });

  it('a crash between the database change and the store is finished at the next unseal', async () => {
    const { root, password } = await configWithRoot('rot-crash');
    // What a crash leaves: the record written, the database changed, the config not.
    const next = 'Next-root-password-from-the-wal1';
    await mountStore().put('root-rotation/rot-crash', { new_password: next, created: new Date().toISOString() });
    await db.query(`ALTER ROLE ${pg.escapeIdentifier(root)} WITH PASSWORD ${pg.escapeLiteral(next)}`);
    await sealAndUnseal();
    await credsWork('rot-crash');
    assert.equal(await storedRootPassword('rot-crash'), next);
    assert.deepEqual(await mountStore().list('root-rotation/'), []);
    assert.equal(await db.login(root, password), '28P01');
  });

  it('a record whose password never reached the database is dropped, and the stored root stays', async () => {
    const { root, password } = await configWithRoot('rot-void');
    await mountStore().put('root-rotation/rot-void', { new_password: 'Never-applied-password-000000001', created: new Date().toISOString() });
    await sealAndUnseal();
    await credsWork('rot-void');
    assert.equal(await storedRootPassword('rot-void'), password);
    assert.deepEqual(await mountStore().list('root-rotation/'), []);
    assert.equal(await db.login(root, password), true);
  });

  it('a rotation the database refuses changes nothing', async () => {
    const { root, password } = await configWithRoot('rot-refused', { root_rotation_statements: [`ALTER ROLE "no_such_root" WITH PASSWORD '{{password}}'`] });
    const msg = fails(await t.call('update', 'database/rotate-root/rot-refused'), 502, /database "rot-refused" refused to change the root password: role "no_such_root" does not exist/);
    assert.ok(!msg.includes(password));
    assert.equal(await storedRootPassword('rot-refused'), password);
    assert.equal(await db.login(root, password), true);
    assert.deepEqual(await mountStore().list('root-rotation/'), []);
    await credsWork('rot-refused');
  });

  it('needs the root credentials as fields, and an existing config', async () => {
    const password = await makeUser('root_literal', true);
    ok(await t.call('update', 'database/config/literal', {
      plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://root_literal:${password}@127.0.0.1:${db.port}/postgres`,
    }));
    fails(await t.call('update', 'database/rotate-root/literal'), 400, /rotate-root needs the root user in username and password/);
    fails(await t.call('update', 'database/rotate-root/missing'), 404, /no database config "missing"/);
    fails(await t.call('update', 'database/config/literal', { root_rotation_statements: ['ALTER ROLE "{{name}}" VALID UNTIL \'{{expiration}}\''] }), 400, /root_rotation_statements: placeholder "\{\{expiration\}\}" has no value/);
  });
});

describe('static roles', () => {
  const cfg = { plugin_name: 'postgresql-database-plugin', username: 'root_static', allowed_roles: ['app', 'fast', 'sealed', 'gone', 'custom', 'bad*'] };

  it('setup: a config for the static roles', async () => {
    const password = await makeUser('root_static', true);
    ok(await t.call('update', 'database/config/st', { ...cfg, password, connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${db.port}/postgres` }));
  });

  it('creating a static role rotates the password at once; static-creds returns the one that logs in', async () => {
    const initial = await makeUser('app_static');
    ok(await t.call('update', 'database/static-roles/app', { db_name: 'st', username: 'app_static', rotation_period: '1h' }));
    const c = ok(await t.call('read', 'database/static-creds/app'));
    assert.equal(c.username, 'app_static');
    assert.notEqual(c.password, initial);
    assert.equal(c.rotation_period, 3600);
    assert.ok(c.ttl > 3590 && c.ttl <= 3600, `ttl ${c.ttl}`);
    assert.ok(Date.now() - Date.parse(c.last_vault_rotation) < 10_000);
    assert.equal(await db.login('app_static', c.password), true);
    assert.equal(await db.login('app_static', initial), '28P01');
    assert.deepEqual(ok(await t.call('read', 'database/static-roles/app')), {
      db_name: 'st', username: 'app_static', rotation_period: 3600, rotation_statements: [], last_vault_rotation: c.last_vault_rotation, credential_type: 'password',
    });
    assert.deepEqual(ok(await t.call('list', 'database/static-roles/')).keys, ['app']);
  });

  it('rotate-role rotates now', async () => {
    const before = ok(await t.call('read', 'database/static-creds/app'));
    ok(await t.call('update', 'database/rotate-role/app'));
    const after = ok(await t.call('read', 'database/static-creds/app'));
    assert.notEqual(after.password, before.password);
    assert.equal(await db.login('app_static', after.password), true);
    assert.equal(await db.login('app_static', before.password), '28P01');
    fails(await t.call('update', 'database/rotate-role/none'), 404);
  });

  it('passwords rotate on schedule', async () => {
    await makeUser('fast_static');
    ok(await t.call('update', 'database/static-roles/fast', { db_name: 'st', username: 'fast_static', rotation_period: '5s' }));
    const first = ok(await t.call('read', 'database/static-creds/fast'));
    assert.ok(first.ttl <= 5);
    assert.ok(await eventually(async () => ok(await t.call('read', 'database/static-creds/fast')).last_vault_rotation !== first.last_vault_rotation, 12_000), 'rotated within its period');
    const second = ok(await t.call('read', 'database/static-creds/fast'));
    assert.equal(await db.login('fast_static', second.password), true);
    assert.equal(await db.login('fast_static', first.password), '28P01');
    ok(await t.call('update', 'database/static-roles/fast', { rotation_period: '1h' }), 'slow it down: the new period counts from the last rotation');
    assert.ok(ok(await t.call('read', 'database/static-creds/fast')).ttl > 3500);
  });

  it('nothing rotates while sealed; a rotation that fell due meanwhile runs right after unseal; a deleted role never rotates again', async () => {
    await makeUser('sealed_static');
    await makeUser('gone_static');
    ok(await t.call('update', 'database/static-roles/sealed', { db_name: 'st', username: 'sealed_static', rotation_period: '5s' }));
    ok(await t.call('update', 'database/static-roles/gone', { db_name: 'st', username: 'gone_static', rotation_period: '5s' }));
    const gone = ok(await t.call('read', 'database/static-creds/gone'));
    ok(await t.call('delete', 'database/static-roles/gone'));
    fails(await t.call('read', 'database/static-creds/gone'), 404);
    const before = ok(await t.call('read', 'database/static-creds/sealed'));
    let unsealedAt = 0;
    await sealAndUnseal(async () => {
      await sleep(6000);
      assert.equal(await db.login('sealed_static', before.password), true, 'no rotation while sealed');
      unsealedAt = Date.now();
    });
    assert.ok(await eventually(async () => Date.parse(ok(await t.call('read', 'database/static-creds/sealed')).last_vault_rotation) >= unsealedAt, 3000), 'rotated right after unseal');
    const after = ok(await t.call('read', 'database/static-creds/sealed'));
    assert.equal(await db.login('sealed_static', after.password), true);
    assert.equal(await db.login('sealed_static', before.password), '28P01');
    assert.equal(await db.login('gone_static', gone.password), true, 'the deleted role\'s user kept its last password');
    ok(await t.call('update', 'database/static-roles/sealed', { rotation_period: '1h' }));
  });

  it('custom rotation statements', async () => {
    await makeUser('custom_static');
    ok(await t.call('update', 'database/static-roles/custom', {
      db_name: 'st', username: 'custom_static', rotation_period: '1h',
      rotation_statements: `ALTER ROLE "{{name}}" WITH PASSWORD '{{password}}' CONNECTION LIMIT 3;`,
    }));
    const c = ok(await t.call('read', 'database/static-creds/custom'));
    assert.equal(await db.login('custom_static', c.password), true);
    assert.equal((await db.query('SELECT rolconnlimit FROM pg_roles WHERE rolname = $1', ['custom_static'])).rows[0].rolconnlimit, 3);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['a rotation period under 5s', { db_name: 'st', username: 'app_static', rotation_period: '2s' }, /rotation_period must be at least 5s, got 2s/],
    ['no rotation period', { db_name: 'st', username: 'app_static' }, /rotation_period is required/],
    ['a user that does not exist', { db_name: 'st', username: 'nobody_here', rotation_period: '1h' }, /username "nobody_here" does not exist on database "st"/],
    ['a user name that could break out of quotes', { db_name: 'st', username: 'x"; DROP ROLE root_static; --', rotation_period: '1h' }, /cannot break out of a quoted statement/],
    ['a missing config', { db_name: 'nope', username: 'app_static', rotation_period: '1h' }, /db_name "nope" names no database config/],
    ['an unknown placeholder', { db_name: 'st', username: 'app_static', rotation_period: '1h', rotation_statements: 'ALTER ROLE "{{user}}"' }, /unknown placeholder "\{\{user\}\}"/],
    ['a bad duration', { db_name: 'st', username: 'app_static', rotation_period: 'weekly' }, /field "rotation_period"/],
  ];
  for (const [what, body, message] of bad) {
    it(`refuses ${what} (400) and stores nothing`, async () => {
      fails(await t.call('update', 'database/static-roles/bad-one', body), 400, message);
      fails(await t.call('read', 'database/static-roles/bad-one'), 404);
    });
  }

  it('refuses a role the config does not allow, and changing the user or database of a role', async () => {
    fails(await t.call('update', 'database/static-roles/other', { db_name: 'st', username: 'app_static', rotation_period: '1h' }), 400, /static role "other" is not allowed to use database "st"/);
    fails(await t.call('update', 'database/static-roles/app', { username: 'custom_static' }), 400, /username cannot be changed/);
    fails(await t.call('update', 'database/static-roles/app', { db_name: 'rot' }), 400, /db_name cannot be changed/);
  });
});

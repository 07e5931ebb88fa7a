import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import type { PipelineResult } from '../../src/core/pipeline.js';
import type { SecretContext } from '../../src/core/request.js';
import { makeCore } from '../helpers/core.js';
import { startPostgres } from '../helpers/postgres.js';
import { startTestServer } from '../helpers/server.js';
import { checkPlaceholders, formatExpiration, generatePassword, generateUsername, globMatch, parseStatements, render } from '../../src/secrets/database/templates.js';
import { fails, ok } from '../helpers/results.js';
import { scrubPieces } from '../../src/secrets/database/connections.js';
import { eventually } from '../helpers/wait.js';

// One real core and one real PostgreSQL (Debian's binaries, a fresh cluster on a loopback port) for the file.
const db = await startPostgres();
const t = await makeCore();

// Aegis connects as a superuser of its own, never the harness's.
const ROOT = 'aegis_admin';
const ROOT_PASSWORD = 'root-Pw-7f3a9c1e5b';
await db.query(`CREATE ROLE ${ROOT} WITH LOGIN SUPERUSER PASSWORD '${ROOT_PASSWORD}'`);
await db.query('CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL)');
await db.query("INSERT INTO products VALUES (1, 'anvil'), (2, 'rocket')");
const URL_TEMPLATE = `postgresql://{{username}}:{{password}}@127.0.0.1:${db.port}/postgres`;

ok(await t.call('update', 'sys/mounts/database', { type: 'database' }), 'mount database/');
ok(await t.call('update', 'database/config/main', {
  plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: ROOT_PASSWORD, allowed_roles: '*',
}), 'config main');

const READONLY = [
  `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`,
  'GRANT SELECT ON products TO "{{name}}";',
];

async function role(name: string, extra: Record<string, unknown> = {}): Promise<void> {
  ok(await t.call('update', `database/roles/${name}`, { db_name: 'main', creation_statements: READONLY, default_ttl: '1h', max_ttl: '24h', ...extra }), `role ${name}`);
}

const creds = (roleName: string) => t.call('read', `database/creds/${roleName}`);

/** The lease the pipeline made for issued credentials. */
function leaseOf(r: PipelineResult): { id: string; duration: number; renewable: boolean } {
  assert.ok(r.response?.lease, 'the response carries a lease');
  return r.response.lease;
}

const revoke = async (r: PipelineResult) => ok(await t.call('update', 'sys/leases/revoke', { lease_id: leaseOf(r).id }), 'revoke lease');
const renew = async (r: PipelineResult, seconds: number) => ok(await t.call('update', 'sys/leases/renew', { lease_id: leaseOf(r).id, increment: seconds }), 'renew lease');

/** What the lease manager hands the engine's secret type for these credentials (to call it directly). */
async function secretContext(r: PipelineResult): Promise<SecretContext> {
  const entry = await t.core.leases.lookup(leaseOf(r).id);
  const m = t.core.router.get('database/')!;
  return { leaseId: entry.id, internal: entry.internal, store: m.store, mountPath: 'database/', issueTime: entry.issueTime, expireTime: entry.expireTime };
}

const credsType = () => t.core.router.get('database/')!.backend.secretTypes!.creds!;

async function validUntil(user: string): Promise<number> {
  const r = await db.query<{ v: Date | null }>('SELECT rolvaliduntil AS v FROM pg_roles WHERE rolname = $1', [user]);
  assert.ok(r.rows[0], `role ${user} exists`);
  return r.rows[0].v!.getTime();
}

async function leftBehind(prefix: string): Promise<string[]> {
  return (await db.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [`${prefix}%`])).rows.map((r) => r.rolname);
}

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('database config', () => {
  it('a read shows the connection details without the root password', async () => {
    const d = ok(await t.call('read', 'database/config/main'));
    assert.equal(d.plugin_name, 'postgresql-database-plugin');
    assert.deepEqual(d.allowed_roles, ['*']);
    assert.equal(d.verify_connection, true);
    assert.equal(d.connection_details.connection_url, URL_TEMPLATE);
    assert.equal(d.connection_details.username, ROOT);
    assert.equal(d.connection_details.max_open_connections, 4);
    assert.ok(!JSON.stringify(d).includes(ROOT_PASSWORD), 'the root password is never returned');
    assert.ok(!('password' in d.connection_details));
  });

  it('a literal password in connection_url is masked on read', async () => {
    ok(await t.call('update', 'database/config/literal', {
      plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://${ROOT}:${ROOT_PASSWORD}@127.0.0.1:${db.port}/postgres`,
    }));
    const d = ok(await t.call('read', 'database/config/literal'));
    assert.equal(d.connection_details.connection_url, `postgresql://${ROOT}:*****@127.0.0.1:${db.port}/postgres`);
    assert.ok(!JSON.stringify(d).includes(ROOT_PASSWORD));
    ok(await t.call('delete', 'database/config/literal'));
  });

  it('lists configs, and a deleted config is gone', async () => {
    ok(await t.call('update', 'database/config/temp', { plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: ROOT_PASSWORD }));
    assert.deepEqual(ok(await t.call('list', 'database/config/')).keys.sort(), ['main', 'temp']);
    ok(await t.call('delete', 'database/config/temp'));
    fails(await t.call('read', 'database/config/temp'), 404, /no database config "temp"/);
    ok(await t.call('update', 'database/reset/main'), 'reset closes the pool; the next use reconnects');
    fails(await t.call('update', 'database/reset/nope'), 404);
  });

  it('an update keeps the fields it does not name (and still verifies the connection)', async () => {
    ok(await t.call('update', 'database/config/main', { max_open_connections: 6 }));
    const d = ok(await t.call('read', 'database/config/main'));
    assert.equal(d.connection_details.max_open_connections, 6);
    assert.equal(d.connection_details.username, ROOT);
    assert.deepEqual(d.allowed_roles, ['*']);
  });
});

describe('an unreachable or refusing database', () => {
  it('a config whose database refuses connections is a 502 naming the connection, and nothing is stored', async () => {
    const closed = await closedPort();
    const msg = fails(await t.call('update', 'database/config/down', {
      plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${closed}/postgres`,
      username: ROOT, password: ROOT_PASSWORD,
    }), 502, /cannot connect to database "down" \(postgresql:\/\/aegis_admin:\*\*\*\*\*@127\.0\.0\.1:\d+\/postgres\)/);
    assert.match(msg, /ECONNREFUSED/);
    assert.ok(!msg.includes(ROOT_PASSWORD), 'the message never carries the password');
    fails(await t.call('read', 'database/config/down'), 404);
  });

  it('a wrong root password is a 502 that says authentication failed, without the password', async () => {
    const msg = fails(await t.call('update', 'database/config/badpw', {
      plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: 'wrong-Secret-123',
    }), 502, /cannot connect to database "badpw".*password authentication failed/);
    assert.ok(!msg.includes('wrong-Secret-123'));
    fails(await t.call('read', 'database/config/badpw'), 404);
  });

  it('with verify_connection=false the config is stored, and creds fail with 502 when the database is down', async () => {
    ok(await t.call('update', 'database/config/later', {
      plugin_name: 'postgresql-database-plugin', connection_url: `postgresql://{{username}}:{{password}}@127.0.0.1:${await closedPort()}/postgres`,
      username: ROOT, password: ROOT_PASSWORD, verify_connection: false, allowed_roles: ['later-role'],
    }));
    ok(await t.call('update', 'database/roles/later-role', { db_name: 'later', creation_statements: READONLY }));
    const msg = fails(await creds('later-role'), 502, /cannot connect to database "later"/);
    assert.ok(!msg.includes(ROOT_PASSWORD));
    ok(await t.call('delete', 'database/roles/later-role'));
    ok(await t.call('delete', 'database/config/later'));
  });
});

describe('dynamic credentials', () => {
  it('creds are a fresh user that logs in and can do exactly what its statements grant', async () => {
    await role('readonly');
    const r = await creds('readonly');
    const d = ok(r, 'creds');
    assert.match(d.username, /^v-root-readonly-[A-Za-z0-9]{20}-\d{10}$/);
    assert.ok(d.username.length <= 63);
    assert.match(d.password, /^[A-Za-z0-9_-]{20,}$/);
    const lease = leaseOf(r);
    assert.match(lease.id, /^database\/creds\/readonly\/.+/);
    assert.equal(lease.duration, 3600);
    assert.equal(lease.renewable, true);
    const entry = await t.core.leases.lookup(lease.id);
    assert.deepEqual(entry.internal, { username: d.username, db_name: 'main', role: 'readonly' }, 'revocation needs only the user, its database and its role');
    assert.equal(entry.maxExpireTime - entry.issueTime, 86400_000, "the role's max_ttl bounds renewals");

    const c = await db.connect(d.username, d.password);
    try {
      assert.deepEqual((await c.query('SELECT name FROM products ORDER BY id')).rows.map((x) => x.name), ['anvil', 'rocket']);
      await assert.rejects(c.query("INSERT INTO products VALUES (3, 'magnet')"), (err: pg.DatabaseError) => err.code === '42501', 'INSERT is denied');
    } finally {
      await c.end();
    }
    // VALID UNTIL is the lease's expiry (Vault's {{expiration}}).
    const until = await validUntil(d.username);
    assert.ok(Math.abs(until - (Date.now() + 3600_000)) < 60_000, `VALID UNTIL ${new Date(until).toISOString()} is about an hour from now`);
    await revoke(r);
  });

  it('usernames are cut to PostgreSQL\'s 63-character limit; every request gets a different user and password', async () => {
    await role('a-role-with-a-rather-long-name-indeed');
    const a = ok(await creds('a-role-with-a-rather-long-name-indeed'));
    const b = ok(await creds('a-role-with-a-rather-long-name-indeed'));
    assert.ok(a.username.startsWith('v-root-a-role-w-'));
    assert.notEqual(a.username, b.username);
    assert.notEqual(a.password, b.password);
    for (const u of [a, b]) assert.equal(await db.login(u.username, u.password), true);
  });

  it('revocation ends the user\'s open sessions, and it can no longer log in', async () => {
    await role('revoked');
    const r = await creds('revoked');
    const d = ok(r);
    const session = await db.connect(d.username, d.password);
    let sessionError: Error | null = null;
    session.on('error', (err) => { sessionError = err; });
    assert.equal((await session.query('SELECT count(*)::int AS n FROM products')).rows[0].n, 2);

    await revoke(r);
    assert.equal((await db.query('SELECT 1 FROM pg_stat_activity WHERE usename = $1', [d.username])).rowCount, 0, 'no live session');
    await assert.rejects(session.query('SELECT 1'), 'the open session is dead');
    assert.ok(sessionError, 'the client saw its connection terminated');
    await session.end().catch(() => undefined);
    assert.equal(await db.roleExists(d.username), false, 'the role is dropped');
    assert.notEqual(await db.login(d.username, d.password), true, 'it cannot log in');
  });

  it('revoking again succeeds when the user is already gone (revocation is retried after failures)', async () => {
    await role('twice');
    const r = await creds('twice');
    const ctx = await secretContext(r);
    await revoke(r);
    assert.equal(await db.roleExists(ok(r).username), false);
    await credsType().revoke(ctx);
    await credsType().revoke(ctx);
  });

  it('custom revocation statements run instead of the default', async () => {
    await role('custom-revoke', { revocation_statements: ['REVOKE ALL ON products FROM "{{name}}";', 'DROP ROLE "{{name}}";'] });
    const r = await creds('custom-revoke');
    await revoke(r);
    assert.equal(await db.roleExists(ok(r).username), false);
  });

  it('revocation still works after the role was deleted (Vault\'s default statements)', async () => {
    await role('deleted-later');
    const r = await creds('deleted-later');
    ok(await t.call('delete', 'database/roles/deleted-later'));
    await revoke(r);
    assert.equal(await db.roleExists(ok(r).username), false);
  });

  it('renewal moves VALID UNTIL to the new expiry', async () => {
    await role('renewable', { default_ttl: '60s' });
    const r = await creds('renewable');
    const d = ok(r);
    const before = await validUntil(d.username);
    assert.ok(before < Date.now() + 61_000);
    await renew(r, 7200);
    const after = await validUntil(d.username);
    assert.ok(Math.abs(after - (Date.now() + 7200_000)) < 60_000, `VALID UNTIL moved to about two hours from now (${new Date(after).toISOString()})`);
    await revoke(r);
  });

  it('when the lease expires the user is dropped, and its open session ended', async () => {
    await role('short', { default_ttl: '2s', max_ttl: '2s' });
    const r = await creds('short');
    const d = ok(r);
    assert.equal(leaseOf(r).duration, 2);
    const session = await db.connect(d.username, d.password);
    session.on('error', () => undefined);
    assert.ok(await eventually(async () => !(await db.roleExists(d.username)), 15_000), 'the lease manager revoked the expired user');
    await assert.rejects(session.query('SELECT 1'), 'the session that outlived the lease is dead');
    await session.end().catch(() => undefined);
    assert.notEqual(await db.login(d.username, d.password), true);
  });

  it('PostgreSQL itself refuses the user once the {{expiration}} the engine wrote has passed', async () => {
    await role('valid-until');
    const r = await creds('valid-until');
    const d = ok(r);
    // The engine's renew writes VALID UNTIL from the expiry it is given; give it one in the past.
    await credsType().renew!({ ...(await secretContext(r)), expireTime: Date.now() - 2000 });
    assert.ok((await validUntil(d.username)) < Date.now());
    assert.notEqual(await db.login(d.username, d.password), true, 'expired credentials are refused');
    await revoke(r);
  });

  it('a creation statement that fails halfway leaves no role behind', async () => {
    await role('halfway', { creation_statements: [...READONLY, 'GRANT SELECT ON no_such_table TO "{{name}}";'] });
    const msg = fails(await creds('halfway'), 502, /database "main" refused to create a user for role "halfway": relation "no_such_table" does not exist/);
    assert.ok(!msg.includes(ROOT_PASSWORD));
    assert.deepEqual(await leftBehind('v-root-halfway-'), []);
  });

  it('even a statement that commits on its own cannot leave a user behind when a later one fails', async () => {
    await role('selfcommit', { creation_statements: [READONLY[0], 'COMMIT;', 'GRANT SELECT ON no_such_table TO "{{name}}";'] });
    fails(await creds('selfcommit'), 502, /no_such_table/);
    assert.deepEqual(await leftBehind('v-root-selfcommi-'), []);
  });

  it('a password that appears in a database error is scrubbed from the message', async () => {
    // Unquoted password: PostgreSQL's syntax error quotes the text near it.
    await role('syntax', { creation_statements: ['CREATE ROLE "{{name}}" WITH LOGIN PASSWORD {{password}} VALID UNTIL \'{{expiration}}\';'] });
    const msg = fails(await creds('syntax'), 502, /syntax error at or near "\*\*\*\*\*"/);
    assert.doesNotMatch(msg, /[A-Za-z0-9_-]{32}/);
    assert.deepEqual(await leftBehind('v-root-syntax-'), []);
  });

  it('the TTL comes from the role, capped by its max_ttl; 0 means the system default', async () => {
    await role('ttl-default', { default_ttl: 0, max_ttl: 0 });
    const r = await creds('ttl-default');
    assert.equal(leaseOf(r).duration, t.core.defaultTtl);
    const entry = await t.core.leases.lookup(leaseOf(r).id);
    assert.equal(entry.maxExpireTime - entry.issueTime, t.core.maxTtl * 1000);
    await revoke(r);
  });

  it('roles read back in Vault\'s shape and list', async () => {
    await role('shape', { revocation_statements: 'DROP ROLE "{{name}}";' });
    assert.deepEqual(ok(await t.call('read', 'database/roles/shape')), {
      db_name: 'main', creation_statements: READONLY, revocation_statements: ['DROP ROLE "{{name}}";'], rollback_statements: [],
      renew_statements: [], default_ttl: 3600, max_ttl: 86400, credential_type: 'password',
    });
    assert.ok(ok(await t.call('list', 'database/roles/')).keys.includes('shape'));
    ok(await t.call('delete', 'database/roles/shape'));
    fails(await t.call('read', 'database/roles/shape'), 404);
  });

  it('statements can be given as a JSON array string or base64, as Vault accepts them', async () => {
    const json = JSON.stringify(READONLY);
    ok(await t.call('update', 'database/roles/json', { db_name: 'main', creation_statements: json }));
    assert.deepEqual(ok(await t.call('read', 'database/roles/json')).creation_statements, READONLY);
    ok(await t.call('update', 'database/roles/b64', { db_name: 'main', creation_statements: Buffer.from(READONLY.join('\n')).toString('base64') }));
    assert.deepEqual(ok(await t.call('read', 'database/roles/b64')).creation_statements, [READONLY.join('\n')]);
    const r = await creds('b64');
    assert.equal(await db.login(ok(r).username, ok(r).password), true);
    await revoke(r);
  });
});

describe('bad input is refused with 400 and leaves nothing behind', () => {
  const base = { db_name: 'main', creation_statements: READONLY };
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['an unknown placeholder', { ...base, creation_statements: ['CREATE ROLE "{{nmae}}";'] }, /creation_statements: unknown placeholder "\{\{nmae\}\}"/],
    ['a placeholder with no value where it runs', { ...base, revocation_statements: ["DROP ROLE \"{{name}}\"; -- '{{password}}'"] }, /revocation_statements: placeholder "\{\{password\}\}" has no value/],
    ['no creation statements', { db_name: 'main' }, /creation_statements is required/],
    ['no db_name', { creation_statements: READONLY }, /db_name is required/],
    ['a missing config', { ...base, db_name: 'nope' }, /db_name "nope" names no database config/],
    ['a bad duration', { ...base, default_ttl: 'soon' }, /field "default_ttl": "soon" is not a duration/],
    ['a negative duration', { ...base, max_ttl: -5 }, /field "max_ttl"/],
    ['max_ttl shorter than default_ttl', { ...base, default_ttl: '2h', max_ttl: '1h' }, /default_ttl \(2h0m0s\) must not be longer than max_ttl \(1h0m0s\)/],
    ['a statements value that is not SQL', { ...base, creation_statements: { a: 1 } }, /creation_statements: expected a list of SQL statements/],
    ['another credential type', { ...base, credential_type: 'rsa_private_key' }, /credential_type "rsa_private_key" is not supported/],
  ];
  for (const [what, body, message] of cases) {
    it(`role with ${what}`, async () => {
      fails(await t.call('update', 'database/roles/bad', body), 400, message);
      fails(await t.call('read', 'database/roles/bad'), 404);
    });
  }

  it('a role that the config\'s allowed_roles does not list', async () => {
    ok(await t.call('update', 'database/config/narrow', {
      plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: ROOT_PASSWORD, allowed_roles: ['app-*'],
    }));
    fails(await t.call('update', 'database/roles/other', { db_name: 'narrow', creation_statements: READONLY }), 400, /role "other" is not allowed to use database "narrow": add it to that config's allowed_roles \(now \[app-\*\]\)/);
    ok(await t.call('update', 'database/roles/app-web', { db_name: 'narrow', creation_statements: READONLY }), 'a glob match is allowed');
    // Narrowing the config later stops issuance at once.
    ok(await t.call('update', 'database/config/narrow', { allowed_roles: ['app-api'] }));
    fails(await creds('app-web'), 400, /not allowed to use database "narrow"/);
    assert.deepEqual(await leftBehind('v-root-app-web-'), []);
  });

  const config = { plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: ROOT_PASSWORD };
  const configCases: [string, Record<string, unknown>, RegExp][] = [
    ['another plugin', { ...config, plugin_name: 'mysql-database-plugin' }, /plugin_name "mysql-database-plugin" is not supported/],
    ['no plugin_name', { ...config, plugin_name: undefined }, /plugin_name is required/],
    ['no connection_url', { ...config, connection_url: undefined }, /connection_url is required/],
    ['a non-PostgreSQL URL', { ...config, connection_url: 'mysql://{{username}}:{{password}}@127.0.0.1/x' }, /must be a URL starting with postgresql:\/\//],
    ['an unknown placeholder in the URL', { ...config, connection_url: 'postgresql://{{user}}:{{password}}@127.0.0.1/x' }, /connection_url: unknown placeholder "\{\{user\}\}"/],
    ['{{password}} without a password', { ...config, password: undefined }, /connection_url uses \{\{password\}\}: set password/],
    ['a bad pool size', { ...config, max_open_connections: 0 }, /max_open_connections": must be at least 1/],
    ['a password policy', { ...config, password_policy: 'strong' }, /password_policy is not supported/],
  ];
  for (const [what, body, message] of configCases) {
    it(`config with ${what}`, async () => {
      fails(await t.call('update', 'database/config/bad', body), 400, message);
      fails(await t.call('read', 'database/config/bad'), 404);
    });
  }

  it('creds for an unknown role', async () => {
    fails(await creds('never-written'), 400, /unknown role: never-written/);
  });

  it('names that could not be Vault names', async () => {
    fails(await t.call('update', 'database/roles/-dash', { db_name: 'main', creation_statements: READONLY }), 400, /role name "-dash"/);
  });
});

describe('over HTTP and in the audit log', () => {
  it('creds over HTTP have Vault\'s shape, and the audit log never holds the password in clear', async () => {
    const srv = await startTestServer();
    const auditPath = join(srv.dataDir, 'audit.log');
    assert.equal((await srv.api('PUT', 'sys/audit/file', { body: { type: 'file', options: { file_path: auditPath } } })).status, 204);
    assert.equal((await srv.api('POST', 'sys/mounts/database', { body: { type: 'database' } })).status, 204);
    assert.equal((await srv.api('POST', 'database/config/pg', { body: {
      plugin_name: 'postgresql-database-plugin', connection_url: URL_TEMPLATE, username: ROOT, password: ROOT_PASSWORD, allowed_roles: ['web'],
    } })).status, 204);
    assert.equal((await srv.api('POST', 'database/roles/web', { body: { db_name: 'pg', creation_statements: READONLY, default_ttl: '5m' } })).status, 204);
    const res = await srv.api('GET', 'database/creds/web');
    assert.equal(res.status, 200, res.text);
    const { username, password } = res.body.data;
    assert.equal(await db.login(username, password), true);
    assert.match(res.body.lease_id, /^database\/creds\/web\/.+/);
    assert.equal(res.body.lease_duration, 300);
    assert.equal(res.body.renewable, true);
    assert.equal((await srv.api('PUT', 'sys/leases/revoke', { body: { lease_id: res.body.lease_id } })).status, 204);
    assert.equal(await db.roleExists(username), false);
    const log = readFileSync(auditPath, 'utf8');
    assert.ok(!log.includes(password), 'the issued password is HMACed in the audit log');
    assert.ok(!log.includes(ROOT_PASSWORD), 'the root password is HMACed in the audit log');
    assert.ok(log.includes('"plugin_name":"postgresql-database-plugin"'), 'declared plain fields are readable');
  });
});

describe('templates and generated values', () => {
  it('a syntax error quoting any piece of a generated password, however short, is masked', () => {
    const pw = 'Ab3-MBK_x9zQwErTyUiOpAsDfGhJkLzX';
    assert.equal(scrubPieces('syntax error at or near "MBK"', [pw]), 'syntax error at or near "*****"');
    assert.equal(scrubPieces('syntax error at or near "3"', [pw]), 'syntax error at or near "*****"');
    assert.equal(scrubPieces('syntax error at or near "CREATE"', [pw]), 'syntax error at or near "CREATE"');
    assert.doesNotMatch(scrubPieces(`bad ${pw.slice(4, 20)} here`, [pw]), /MBK_x9/);
  });

  it('generated passwords are 32 characters from [A-Za-z0-9_-] with upper, lower, digit and dash', () => {
    for (let i = 0; i < 500; i++) {
      const p = generatePassword();
      assert.match(p, /^[A-Za-z][A-Za-z0-9_-]{31}$/);
      assert.ok(/[A-Z]/.test(p) && /[a-z]/.test(p) && /[0-9]/.test(p) && p.includes('-'), p);
    }
  });

  it('generated user names cannot leave a quoted identifier, whatever the display or role name', () => {
    const u = generateUsername('token-"evil\'', 'ro"le;--', Date.UTC(2026, 0, 1));
    assert.match(u, /^v-token--e-ro-le----[A-Za-z0-9]{20}-1767225600$/);
  });

  it('{{username}} is {{name}}; {{expiration}} is Vault\'s format in UTC', () => {
    assert.equal(render('A "{{name}}" B "{{ username }}" C \'{{expiration}}\'', { name: 'u1', expiration: formatExpiration(Date.UTC(2026, 10, 23, 13, 5, 9)) }),
      'A "u1" B "u1" C \'2026-11-23 13:05:09+0000\'');
  });

  it('statements: a string stays one entry (commas and all), JSON arrays and base64 are read, other shapes refused', () => {
    assert.deepEqual(parseStatements('s', 'GRANT SELECT, INSERT ON t TO "{{name}}";'), ['GRANT SELECT, INSERT ON t TO "{{name}}";']);
    assert.deepEqual(parseStatements('s', '["A;", "B;"]'), ['A;', 'B;']);
    assert.deepEqual(parseStatements('s', Buffer.from('["A;"]').toString('base64')), ['A;']);
    assert.deepEqual(parseStatements('s', ''), []);
    assert.throws(() => parseStatements('s', [1]), /expected a list of SQL statements/);
    assert.throws(() => checkPlaceholders('s', ['{{ name }} {{Name}}']), /unknown placeholder "\{\{Name\}\}"/);
  });

  it('allowed_roles globs', () => {
    assert.ok(globMatch(['*'], 'anything'));
    assert.ok(globMatch(['app-*'], 'app-web'));
    assert.ok(!globMatch(['app-*'], 'web-app'));
    assert.ok(globMatch(['a.b'], 'a.b') && !globMatch(['a.b'], 'axb'), 'dots are literal');
    assert.ok(!globMatch([], 'x'), 'an empty list allows nothing, as in Vault');
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPostgres } from '../helpers/postgres.js';
import { ROOT, startTestServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// `aegis database …` as a real child process against a real server and PostgreSQL. The command group is run
// through its register function (src/cli/main.ts wires it into `aegis`).
const db = await startPostgres();
const srv = await startTestServer();
const ROOT_PASSWORD = 'cli-Root-pw-0c1d2e';
await db.query(`CREATE ROLE cli_root WITH LOGIN SUPERUSER PASSWORD '${ROOT_PASSWORD}'`);
assert.equal((await srv.api('POST', 'sys/mounts/database', { body: { type: 'database' } })).status, 204);

const PROGRAM = `
const { Command } = await import('commander');
const { registerDatabase } = await import(${JSON.stringify(join(ROOT, 'src/cli/database.ts'))});
const program = new Command('aegis').exitOverride();
registerDatabase(program);
try { await program.parseAsync(['node', 'aegis', ...process.argv.slice(1)]); } catch { process.exitCode = 2; }
`;

function aegis(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', PROGRAM, ...args], {
      cwd: ROOT, env: { ...process.env, AEGIS_ADDR: srv.address, AEGIS_TOKEN: srv.rootToken }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

describe('aegis database', () => {
  it('config write (password from standard input), config read without the password', async () => {
    const w = await aegis(['database', 'config', 'write', 'pg', 'plugin_name=postgresql-database-plugin',
      `connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:${db.port}/postgres`, 'username=cli_root', 'password=-', 'allowed_roles=ro'], `${ROOT_PASSWORD}\n`);
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /Success! Data written to: database\/config\/pg/);
    const r = await aegis(['database', 'config', 'read', 'pg', '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(r.stdout).data;
    assert.equal(d.connection_details.username, 'cli_root');
    assert.ok(!r.stdout.includes(ROOT_PASSWORD));
  });

  it('role write (statements from a file), creds print the lease and a user that logs in', async () => {
    const sql = join(tempDir('cli-sql'), 'create.sql');
    writeFileSync(sql, `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';\nGRANT CONNECT ON DATABASE postgres TO "{{name}}";\n`);
    const w = await aegis(['database', 'role', 'write', 'ro', 'db_name=pg', `creation_statements=@${sql}`, 'default_ttl=10m']);
    assert.equal(w.code, 0, w.stderr);
    const c = await aegis(['database', 'creds', 'ro']);
    assert.equal(c.code, 0, c.stderr);
    const field = (k: string) => new RegExp(`^${k}\\s+(\\S+)$`, 'm').exec(c.stdout)?.[1];
    assert.match(field('lease_id') ?? '', /^database\/creds\/ro\/.+/);
    assert.equal(field('lease_duration'), '600s');
    assert.equal(await db.login(field('username')!, field('password')!), true);
  });

  it('rotate-root, then creds still work', async () => {
    const r = await aegis(['database', 'rotate-root', 'pg']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await db.login('cli_root', ROOT_PASSWORD), '28P01');
    const c = await aegis(['database', 'creds', 'ro', '--format', 'json']);
    assert.equal(c.code, 0, c.stderr);
    const { username, password } = JSON.parse(c.stdout).data;
    assert.equal(await db.login(username, password), true);
  });

  it('errors are one line on stderr with a non-zero exit', async () => {
    const r = await aegis(['database', 'role', 'write', 'bad', 'db_name=pg', 'creation_statements=CREATE ROLE "{{nope}}"']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: .*unknown placeholder "\{\{nope\}\}"/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const u = await aegis(['database', 'config', 'write', 'x', 'novalue']);
    assert.equal(u.code, 2);
  });
});

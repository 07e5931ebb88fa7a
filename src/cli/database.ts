import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { action, client, listKeys, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printList, printPairs, printResponse, say } from './output.js';

interface DbOptions extends CommonOptions {
  mount: string;
}

const mountOf = (o: DbOptions) => o.mount.replace(/^\/+|\/+$/g, '');

/** A value as given, `@file` to read a file (SQL, a password), or `-` for standard input (kept out of shell history). */
function readValue(key: string, v: string): string {
  try {
    if (v === '-') return readFileSync(0, 'utf8').replace(/\r?\n$/, '');
    if (v.startsWith('@')) return readFileSync(v.slice(1), 'utf8');
  } catch (err) {
    throw new CliError(`${key}: cannot read ${v === '-' ? 'standard input' : v.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return v;
}

/** `key=value` pairs; a key given more than once (e.g. creation_statements=…) becomes a list, as Vault's CLI does. */
function body(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new CliError(`"${p}" must look like key=value (value @file reads a file, - reads standard input)`, 2);
    const key = p.slice(0, i);
    const value = readValue(key, p.slice(i + 1));
    const prev = out[key];
    out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

function withMount(cmd: Command): Command {
  return withFormat(cmd).option('--mount <path>', 'where the database engine is mounted', 'database');
}

function printData(o: CommonOptions, res: Record<string, unknown> | null): void {
  if (o.format === 'json') return printJson(res);
  const d = (res?.data ?? {}) as Record<string, unknown>;
  printPairs(Object.keys(d).sort().map((k) => [k, d[k]]));
}

/** `aegis database …`: connections, roles, credentials and root rotation of the database secrets engine. */
export function registerDatabase(program: Command): void {
  const database = program.command('database').description('dynamic and static PostgreSQL credentials (the database secrets engine)');

  const config = database.command('config').description('database connections (root credentials are never shown)');
  withMount(config.command('write'))
    .description('create or update a connection, e.g. plugin_name=postgresql-database-plugin connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres username=vault password=- allowed_roles=readonly')
    .argument('<name>', 'the connection name')
    .argument('<pairs...>', 'key=value (value @file reads a file, - reads standard input)')
    .action(action(async (name: string, pairs: string[], o: DbOptions) => {
      const res = await client().ok('POST', `${mountOf(o)}/config/${name}`, { body: body(pairs) });
      if (o.format === 'json') return printJson(res.body);
      say(`Success! Data written to: ${mountOf(o)}/config/${name}`);
      return undefined;
    }));
  withMount(config.command('read'))
    .description('a connection: plugin, connection details without the password, allowed roles')
    .argument('<name>', 'the connection name')
    .action(action(async (name: string, o: DbOptions) => printData(o, (await client().ok('GET', `${mountOf(o)}/config/${name}`)).body)));
  withMount(config.command('list'))
    .description('the connections')
    .action(action(async (o: DbOptions) => {
      const keys = await listKeys(`${mountOf(o)}/config/`, 'no connections configured');
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));
  withMount(config.command('delete'))
    .description('delete a connection (leases it issued are not revoked)')
    .argument('<name>', 'the connection name')
    .action(action(async (name: string, o: DbOptions) => {
      await client().ok('DELETE', `${mountOf(o)}/config/${name}`);
      say(`Success! Data deleted (if it existed) at: ${mountOf(o)}/config/${name}`);
    }));

  const role = database.command('role').description('dynamic roles: the SQL that creates, renews and revokes users');
  withMount(role.command('write'))
    .description('create or update a role, e.g. db_name=pg creation_statements=@create.sql default_ttl=1h max_ttl=24h')
    .argument('<name>', 'the role name')
    .argument('<pairs...>', 'key=value (repeat a statements key for several entries; @file reads a file)')
    .action(action(async (name: string, pairs: string[], o: DbOptions) => {
      const res = await client().ok('POST', `${mountOf(o)}/roles/${name}`, { body: body(pairs) });
      if (o.format === 'json') return printJson(res.body);
      for (const w of (res.body?.warnings as string[] | null | undefined) ?? []) say(`WARNING! ${w}`);
      say(`Success! Data written to: ${mountOf(o)}/roles/${name}`);
      return undefined;
    }));
  withMount(role.command('read'))
    .argument('<name>', 'the role name')
    .action(action(async (name: string, o: DbOptions) => printData(o, (await client().ok('GET', `${mountOf(o)}/roles/${name}`)).body)));

  withMount(database.command('creds'))
    .description('new credentials for a role, with a lease (revoke with `aegis lease revoke <lease_id>`)')
    .argument('<role>', 'the role name')
    .action(action(async (roleName: string, o: DbOptions) => {
      const res = await client().ok('GET', `${mountOf(o)}/creds/${roleName}`);
      if (o.format === 'json') return printJson(res.body);
      printResponse(res.body!);
      return undefined;
    }));

  withMount(database.command('rotate-root'))
    .description("rotate a connection's root password: afterwards only Aegis knows it")
    .argument('<name>', 'the connection name')
    .action(action(async (name: string, o: DbOptions) => {
      await client().ok('POST', `${mountOf(o)}/rotate-root/${name}`);
      say(`Success! Rotated the root credentials of ${mountOf(o)}/config/${name}`);
    }));

  withMount(database.command('static-creds'))
    .description("a static role's current password and when it rotates next")
    .argument('<name>', 'the static role name')
    .action(action(async (name: string, o: DbOptions) => printData(o, (await client().ok('GET', `${mountOf(o)}/static-creds/${name}`)).body)));

  withMount(database.command('rotate-role'))
    .description("rotate a static role's password now")
    .argument('<name>', 'the static role name')
    .action(action(async (name: string, o: DbOptions) => {
      await client().ok('POST', `${mountOf(o)}/rotate-role/${name}`);
      say(`Success! Rotated the password of static role ${name}`);
    }));
}

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { action, client, parsePairs, wholeNumber, withFormat, type CommonOptions } from './command.js';
import { CliError, describeError } from './client.js';
import { printJson, printList, printPairs, say, show } from './output.js';

interface KvOptions extends CommonOptions {
  mount?: string;
}

/** `secret/app/db` → mount `secret`, key `app/db`; with --mount the whole argument is the key. */
function split(path: string, mount: string | undefined): { mount: string; key: string } {
  const p = path.replace(/^\/+/, '');
  if (mount) return { mount: mount.replace(/\/+$/, ''), key: p };
  const i = p.indexOf('/');
  if (i <= 0 || i === p.length - 1) throw new CliError(`"${path}" must name a mount and a key, like secret/app/db (or pass --mount)`, 2);
  return { mount: p.slice(0, i), key: p.slice(i + 1) };
}

function readValue(v: string): unknown {
  if (v.startsWith('@')) {
    try {
      return readFileSync(v.slice(1), 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${v.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  return v === '-' ? readFileSync(0, 'utf8') : v;
}

function secretData(args: string[]): Record<string, unknown> {
  if (args.length === 1 && args[0] === '-') {
    try {
      const v = JSON.parse(readFileSync(0, 'utf8'));
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      return v as Record<string, unknown>;
    } catch (err) {
      throw new CliError(`standard input must be a JSON object: ${(err as Error).message}`);
    }
  }
  if (args.length === 0) throw new CliError('give the secret as key=value pairs (value @file reads a file), or - for JSON on standard input', 2);
  return Object.fromEntries(Object.entries(parsePairs(args, 'pair')).map(([k, v]) => [k, readValue(v)]));
}

function versionsOption(v: string | undefined, required: boolean): number[] | undefined {
  if (!v) {
    if (required) throw new CliError('--versions is required, e.g. --versions 1,2', 2);
    return undefined;
  }
  return v.split(',').map((s) => wholeNumber(s.trim(), '--versions'));
}

function printMetaAndData(meta: Record<string, unknown> | undefined, data: Record<string, unknown> | null): void {
  if (meta) {
    say('====== Metadata ======');
    printPairs(Object.keys(meta).sort().map((k) => [k, meta[k]]));
  }
  if (data) {
    say('\n====== Data ======');
    printPairs(Object.keys(data).sort().map((k) => [k, data[k]]));
  }
}

export function registerKv(program: Command): void {
  const kv = program.command('kv').description('read and write versioned key/value secrets (KV v2)');
  const mountOpt = (c: Command) => withFormat(c).option('--mount <path>', 'the KV mount (default: the first segment of the path)');

  mountOpt(kv.command('get'))
    .description('read a secret (latest version, or --version N)')
    .argument('<path>', 'e.g. secret/app/db')
    .option('--version <n>', 'version to read')
    .option('--field <name>', 'print only this field')
    .action(action(async (path: string, o: KvOptions & { version?: string; field?: string }) => {
      const { mount, key } = split(path, o.mount);
      const query = o.version ? { version: String(wholeNumber(o.version, '--version')) } : undefined;
      const res = await client().call('GET', `${mount}/data/${key}`, { query });
      const d = res.body?.data as { data: Record<string, unknown> | null; metadata: Record<string, unknown> } | undefined;
      if (res.status === 404 && d?.metadata) {
        const why = d.metadata.destroyed ? 'destroyed' : 'deleted';
        throw new CliError(`version ${d.metadata.version} of ${path} was ${why} (${d.metadata.deletion_time || 'destroyed'}); see \`aegis kv undelete\``);
      }
      if (res.status >= 400) throw new CliError(res.status === 404 ? `no secret at ${path}` : describeError(res, 'GET', path));
      if (o.field) {
        if (!d!.data || !(o.field in d!.data)) throw new CliError(`field "${o.field}" not present in ${path}`);
        say(typeof d!.data[o.field] === 'string' ? (d!.data[o.field] as string) : show(d!.data[o.field]));
        return undefined;
      }
      if (o.format === 'json') return printJson(res.body);
      printMetaAndData(d!.metadata, d!.data);
      return undefined;
    }));

  const write = (name: 'put' | 'patch') =>
    mountOpt(kv.command(name))
      .description(name === 'put' ? 'write a new version of a secret: key=value pairs, @file values, or - for JSON' : 'merge key=value pairs into the latest version')
      .argument('<path>', 'e.g. secret/app/db')
      .argument('[pairs...]', 'key=value')
      .option('--cas <n>', 'write only if the current version is n (0: only if the secret does not exist)')
      .action(action(async (path: string, pairs: string[], o: KvOptions & { cas?: string }) => {
        const { mount, key } = split(path, o.mount);
        const body: Record<string, unknown> = { data: secretData(pairs) };
        if (o.cas !== undefined) body.options = { cas: wholeNumber(o.cas, '--cas') };
        const res = await client().ok(name === 'put' ? 'PUT' : 'PATCH', `${mount}/data/${key}`, {
          body, headers: name === 'patch' ? { 'content-type': 'application/merge-patch+json' } : undefined,
        });
        if (o.format === 'json') return printJson(res.body);
        const d = res.body!.data as Record<string, unknown>;
        printPairs([['created_time', d.created_time], ['deletion_time', d.deletion_time || 'n/a'], ['destroyed', d.destroyed], ['version', d.version]]);
        return undefined;
      }));
  write('put');
  write('patch');

  const versionsCmd = (name: 'delete' | 'undelete' | 'destroy', summary: string) =>
    mountOpt(kv.command(name))
      .description(summary)
      .argument('<path>', 'e.g. secret/app/db')
      .option('--versions <list>', 'comma-separated version numbers')
      .action(action(async (path: string, o: KvOptions & { versions?: string }) => {
        const { mount, key } = split(path, o.mount);
        const versions = versionsOption(o.versions, name !== 'delete');
        const c = client();
        if (name === 'delete' && !versions) await c.ok('DELETE', `${mount}/data/${key}`);
        else await c.ok(name === 'destroy' ? 'PUT' : 'POST', `${mount}/${name}/${key}`, { body: { versions } });
        say(`Success! Data ${name === 'undelete' ? 'restored' : name === 'destroy' ? 'destroyed' : 'deleted'} at: ${path}`);
      }));
  versionsCmd('delete', 'soft-delete the latest version (or --versions); undelete can restore it');
  versionsCmd('undelete', 'restore soft-deleted versions');
  versionsCmd('destroy', 'permanently remove the data of versions');

  mountOpt(kv.command('list'))
    .description('list keys under a folder, e.g. secret/ or secret/app/')
    .argument('<path>', 'e.g. secret/ or secret/app')
    .action(action(async (path: string, o: KvOptions) => {
      const p = path.replace(/^\/+/, '');
      const i = p.indexOf('/');
      const mount = o.mount?.replace(/\/+$/, '') ?? (i === -1 ? p : p.slice(0, i));
      const prefix = o.mount ? p : i === -1 ? '' : p.slice(i + 1);
      const res = await client().call('GET', `${mount}/metadata/${prefix}`, { query: { list: 'true' } });
      if (res.status === 404) throw new CliError(`no keys under ${path}`);
      if (res.status >= 400) throw new CliError(describeError(res, 'LIST', path));
      const keys = (res.body!.data as { keys: string[] }).keys;
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));

  const meta = kv.command('metadata').description("read, write or delete a secret's metadata");
  mountOpt(meta.command('get'))
    .argument('<path>', 'e.g. secret/app/db')
    .action(action(async (path: string, o: KvOptions) => {
      const { mount, key } = split(path, o.mount);
      const res = await client().ok('GET', `${mount}/metadata/${key}`);
      if (o.format === 'json') return printJson(res.body);
      const d = res.body!.data as Record<string, unknown>;
      printPairs(Object.keys(d).filter((k) => k !== 'versions').sort().map((k) => [k, d[k]]));
      const versions = d.versions as Record<string, Record<string, unknown>>;
      for (const n of Object.keys(versions).sort((a, b) => Number(a) - Number(b))) {
        say(`\n====== Version ${n} ======`);
        printPairs(Object.entries(versions[n]!));
      }
      return undefined;
    }));
  mountOpt(meta.command('put'))
    .argument('<path>', 'e.g. secret/app/db')
    .option('--max-versions <n>', 'versions to keep')
    .option('--cas-required', 'require --cas on writes')
    .option('--delete-version-after <duration>', 'soft-delete versions after this long')
    .option('--custom-metadata <k=v>', 'custom metadata pair (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .action(action(async (path: string, o: KvOptions & { maxVersions?: string; casRequired?: boolean; deleteVersionAfter?: string; customMetadata?: string[] }) => {
      const { mount, key } = split(path, o.mount);
      const body: Record<string, unknown> = {};
      if (o.maxVersions !== undefined) body.max_versions = wholeNumber(o.maxVersions, '--max-versions');
      if (o.casRequired) body.cas_required = true;
      if (o.deleteVersionAfter) body.delete_version_after = o.deleteVersionAfter;
      if (o.customMetadata) body.custom_metadata = parsePairs(o.customMetadata, '--custom-metadata');
      await client().ok('POST', `${mount}/metadata/${key}`, { body });
      say(`Success! Data written to: ${mount}/metadata/${key}`);
    }));
  mountOpt(meta.command('delete'))
    .description('delete the secret with every version and its metadata')
    .argument('<path>', 'e.g. secret/app/db')
    .action(action(async (path: string, o: KvOptions) => {
      const { mount, key } = split(path, o.mount);
      await client().ok('DELETE', `${mount}/metadata/${key}`);
      say(`Success! Data deleted (if it existed) at: ${mount}/metadata/${key}`);
    }));
}

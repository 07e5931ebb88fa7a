import type { Command } from 'commander';
import { action, client, parsePairs, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printList, printPairs, say } from './output.js';

/** Vault's generic verbs: any path of any engine. */
export function registerGeneric(program: Command): void {
  withFormat(program.command('read'))
    .description('GET any API path')
    .argument('<path>', 'e.g. sys/mounts')
    .argument('[query...]', 'key=value query parameters')
    .action(action(async (path: string, query: string[], o: CommonOptions) => {
      const res = await client().ok('GET', path, { query: parsePairs(query, 'query parameter') });
      if (o.format === 'json' || !res.body) return printJson(res.body);
      const d = (res.body.data ?? res.body) as Record<string, unknown>;
      printPairs(Object.keys(d).sort().map((k) => [k, d[k]]));
      return undefined;
    }));

  withFormat(program.command('write'))
    .description('POST key=value data to any API path (- reads a JSON object from standard input)')
    .argument('<path>', 'e.g. auth/token/create')
    .argument('[pairs...]', 'key=value')
    .action(action(async (path: string, pairs: string[], o: CommonOptions) => {
      let body: unknown = parsePairs(pairs.filter((p) => p !== '-'), 'pair');
      if (pairs.includes('-')) {
        try {
          body = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));
        } catch (err) {
          throw new CliError(`standard input is not JSON: ${(err as Error).message}`);
        }
      }
      const res = await client().ok('POST', path, { body });
      if (o.format === 'json') return printJson(res.body);
      if (!res.body) return say(`Success! Data written to: ${path}`);
      const d = (res.body.data ?? res.body.auth ?? res.body) as Record<string, unknown>;
      printPairs(Object.keys(d).sort().map((k) => [k, d[k]]));
      return undefined;
    }));

  program.command('delete')
    .description('DELETE any API path')
    .argument('<path>', 'e.g. secret/data/app')
    .action(action(async (path: string) => {
      await client().ok('DELETE', path);
      say(`Success! Data deleted (if it existed) at: ${path}`);
    }));

  withFormat(program.command('list'))
    .description('LIST any API path')
    .argument('<path>', 'e.g. secret/metadata/')
    .action(action(async (path: string, o: CommonOptions) => {
      const res = await client().call('GET', path, { query: { list: 'true' } });
      if (res.status === 404) throw new CliError(`no entries under ${path}`);
      if (res.status >= 400) throw new CliError(`${path}: ${res.status} ${((res.body?.errors as string[]) ?? []).join('; ')}`);
      const keys = (res.body!.data as { keys: string[] }).keys;
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));
}

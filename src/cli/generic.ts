import type { Command } from 'commander';
import { action, client, listKeys, parsePairs, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printList, printResponse, say } from './output.js';

interface VerbOptions extends CommonOptions {
  wrapTtl?: string;
}

/** X-Vault-Wrap-TTL when --wrap-ttl was given. */
function wrapHeaders(o: VerbOptions): Record<string, string> {
  return o.wrapTtl ? { 'x-vault-wrap-ttl': o.wrapTtl } : {};
}

/** Vault's generic verbs: any path of any engine. */
export function registerGeneric(program: Command): void {
  withFormat(program.command('read'))
    .description('GET any API path')
    .argument('<path>', 'e.g. sys/mounts')
    .argument('[query...]', 'key=value query parameters')
    .option('--wrap-ttl <duration>', 'wrap the response: get a single-use wrapping token valid this long instead (e.g. 5m)')
    .action(action(async (path: string, query: string[], o: VerbOptions) => {
      const res = await client().ok('GET', path, { query: parsePairs(query, 'query parameter'), headers: wrapHeaders(o) });
      if (o.format === 'json' || !res.body) return printJson(res.body);
      printResponse(res.body);
      return undefined;
    }));

  withFormat(program.command('write'))
    .description('POST key=value data to any API path (- reads a JSON object from standard input)')
    .argument('<path>', 'e.g. auth/token/create')
    .argument('[pairs...]', 'key=value')
    .option('--wrap-ttl <duration>', 'wrap the response: get a single-use wrapping token valid this long instead (e.g. 5m)')
    .action(action(async (path: string, pairs: string[], o: VerbOptions) => {
      let body: unknown = parsePairs(pairs.filter((p) => p !== '-'), 'pair');
      if (pairs.includes('-')) {
        try {
          body = JSON.parse((await import('node:fs')).readFileSync(0, 'utf8'));
        } catch (err) {
          throw new CliError(`standard input is not JSON: ${(err as Error).message}`);
        }
      }
      const res = await client().ok('POST', path, { body, headers: wrapHeaders(o) });
      if (o.format === 'json') return printJson(res.body);
      if (!res.body) return say(`Success! Data written to: ${path}`);
      printResponse(res.body);
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
      const keys = await listKeys(path, `no entries under ${path}`);
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));

  withFormat(program.command('unwrap'))
    .description('unwrap a wrapped response, once (default: the wrapping token in AEGIS_TOKEN)')
    .argument('[token]', 'the wrapping token')
    .action(action(async (token: string | undefined, o: CommonOptions) => {
      const res = await client().ok('PUT', 'sys/wrapping/unwrap', token ? { body: { token }, auth: false } : {});
      if (o.format === 'json') return printJson(res.body);
      if (!res.body) return say('The wrapped response was empty.');
      printResponse(res.body);
      return undefined;
    }));
}

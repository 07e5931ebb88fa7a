import type { Command } from 'commander';
import { action, client, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, say } from './output.js';

// `aegis intention …`: service-to-service authorization over mesh/intentions. SRC and DST are `ns/name` or `name`
// (namespace "default"); intentions also take `ns/*` and `*`. `check` exits like Consul's: 0 allowed, 2 denied,
// 1 on an error (note that a usage error, printed on stderr, also exits 2).

export const CHECK_DENIED_EXIT = 2;

interface IntentionJson {
  id: string;
  source: string;
  destination: string;
  action: 'allow' | 'deny';
  methods?: string[];
  path_prefix?: string;
  headers?: HeaderJson[];
  description?: string;
}

type HeaderJson = { name: string; present?: true; exact?: string; prefix?: string };

// RFC 9110 token (a header name); the server checks the same and lowercases.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `--header NAME` (present), `NAME=VALUE` (exact) or `NAME^=PREFIX` (prefix); `check` takes only `NAME=VALUE`. */
export function parseHeaderArg(arg: string, exactOnly = false): HeaderJson {
  const usage = exactOnly ? 'use NAME=VALUE' : 'use NAME, NAME=VALUE or NAME^=PREFIX';
  const eq = arg.indexOf('=');
  const prefix = eq > 0 && arg[eq - 1] === '^';
  const name = eq === -1 ? arg : arg.slice(0, prefix ? eq - 1 : eq);
  if (!TOKEN.test(name)) throw new CliError(`--header "${arg}": ${name === '' ? 'no header name' : `"${name}" is not a header name`}; ${usage}`, 2);
  if (eq === -1 || (exactOnly && prefix)) {
    if (exactOnly) throw new CliError(`--header "${arg}": ${usage}`, 2);
    return { name: name.toLowerCase(), present: true };
  }
  const value = arg.slice(eq + 1);
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new CliError(`--header "${name}": the value must not contain control characters`, 2);
  return prefix ? { name: name.toLowerCase(), prefix: value } : { name: name.toLowerCase(), exact: value };
}

function headerString(h: HeaderJson): string {
  return h.exact !== undefined ? `${h.name}=${h.exact}` : h.prefix !== undefined ? `${h.name}^=${h.prefix}` : h.name;
}

/** `ns/name`, `name`, `ns/*` or `*` as the two path segments of mesh/intentions/…. */
function segments(ref: string, what: string): string {
  if (ref === '*') return '*/*';
  const parts = ref.split('/');
  if (parts.length === 1 && ref !== '') return `default/${ref}`;
  if (parts.length === 2 && parts[0] !== '' && parts[1] !== '') return ref;
  throw new CliError(`${what} "${ref}": use namespace/name, name, namespace/* or *`, 2);
}

function printIntentions(list: IntentionJson[]): void {
  if (list.length === 0) return say('(no intentions)');
  const http = (i: IntentionJson) => [i.methods?.join(',') ?? '', i.path_prefix ?? '', ...(i.headers ?? []).map(headerString)].filter((s) => s).join(' ');
  const rows = list.map((i) => [i.source, i.action, i.destination, http(i), i.description ?? '']);
  const heads = ['SOURCE', 'ACTION', 'DESTINATION', 'HTTP', 'DESCRIPTION'];
  const widths = heads.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
  say(line(heads));
  for (const r of rows) say(line(r));
}

/** `aegis intention allow|deny|get|list|delete|check`. */
export function registerIntention(program: Command): void {
  const intention = program.command('intention').description('service-to-service authorization (intentions, stored as Cedar)');

  for (const verb of ['allow', 'deny'] as const) {
    withFormat(intention.command(verb))
      .description(`${verb} connections from SRC to DST (SRC/DST: ns/name, name, ns/* or *)`)
      .argument('<src>', 'source service')
      .argument('<dst>', 'destination service')
      .option('--methods <list>', 'only these HTTP methods, comma-separated (e.g. GET,POST)')
      .option('--path-prefix <prefix>', 'only request paths under this prefix (starts with /)')
      .option('--header <spec>', 'only requests with this header: NAME (present), NAME=VALUE (exact) or NAME^=PREFIX; repeatable, all must match', collect, [])
      .option('--description <text>', 'free text')
      .action(action(async (src: string, dst: string, o: CommonOptions & { methods?: string; pathPrefix?: string; header: string[]; description?: string }) => {
        const body: Record<string, unknown> = { action: verb };
        if (o.methods !== undefined) body.methods = o.methods.split(',').map((m) => m.trim()).filter((m) => m !== '');
        if (o.pathPrefix !== undefined) body.path_prefix = o.pathPrefix;
        if (o.header.length > 0) body.headers = o.header.map((h) => parseHeaderArg(h));
        if (o.description !== undefined) body.description = o.description;
        const res = await client().ok('PUT', `mesh/intentions/${segments(src, 'SRC')}/${segments(dst, 'DST')}`, { body });
        const data = res.body!.data as IntentionJson & { cedar: string };
        if (o.format === 'json') return printJson(data);
        say(`Success! ${data.source} => ${data.destination} (${data.action}) saved as ${data.id}`);
        return undefined;
      }));
  }

  withFormat(intention.command('get'))
    .description('show one intention and the Cedar statement it is stored as')
    .argument('<src>', 'source service')
    .argument('<dst>', 'destination service')
    .action(action(async (src: string, dst: string, o: CommonOptions) => {
      const data = (await client().ok('GET', `mesh/intentions/${segments(src, 'SRC')}/${segments(dst, 'DST')}`)).body!.data as IntentionJson & { cedar: string };
      if (o.format === 'json') return printJson(data);
      printIntentions([data]);
      say('');
      say(data.cedar);
      return undefined;
    }));

  withFormat(intention.command('list'))
    .description('list intentions')
    .option('--source <src>', 'only intentions from exactly this source')
    .option('--destination <dst>', 'only intentions to exactly this destination')
    .action(action(async (o: CommonOptions & { source?: string; destination?: string }) => {
      const query: Record<string, string> = {};
      if (o.source !== undefined) query.source = o.source;
      if (o.destination !== undefined) query.destination = o.destination;
      const data = (await client().ok('GET', 'mesh/intentions', { query })).body!.data as { intentions: IntentionJson[] };
      if (o.format === 'json') return printJson(data.intentions);
      printIntentions(data.intentions);
      return undefined;
    }));

  intention.command('delete')
    .description('delete the intention from SRC to DST')
    .argument('<src>', 'source service')
    .argument('<dst>', 'destination service')
    .action(action(async (src: string, dst: string) => {
      await client().ok('DELETE', `mesh/intentions/${segments(src, 'SRC')}/${segments(dst, 'DST')}`);
      say(`Success! Deleted the intention ${src} => ${dst}`);
    }));

  withFormat(intention.command('check'))
    .description('would SRC be allowed to connect to DST? Prints Allowed or Denied and the rule that decided; exits 0 allowed, 2 denied')
    .argument('<src>', 'source service (ns/name or name)')
    .argument('<dst>', 'destination service (ns/name or name)')
    .option('--method <method>', 'an HTTP request with this method')
    .option('--path <path>', 'an HTTP request for this path')
    .option('--header <name=value>', 'an HTTP request with this header; repeatable (a repeated name is one header with several values)', collect, [])
    .action(action(async (src: string, dst: string, o: CommonOptions & { method?: string; path?: string; header: string[] }) => {
      const query: Record<string, string> = { source: src, destination: dst };
      if (o.method !== undefined) query.method = o.method;
      if (o.path !== undefined) query.path = o.path;
      if (o.header.length > 0) {
        const headers: Record<string, string[]> = {};
        for (const h of o.header.map((a) => parseHeaderArg(a, true))) (headers[h.name] ??= []).push(h.exact!);
        query.headers = JSON.stringify(headers);
      }
      const d = (await client().ok('GET', 'mesh/intentions/check', { query })).body!.data as { allowed: boolean; reason: string; rules: string[] };
      if (o.format === 'json') printJson(d);
      else {
        say(d.allowed ? 'Allowed' : 'Denied');
        say(d.reason);
      }
      return d.allowed ? 0 : CHECK_DENIED_EXIT;
    }));
}

import type { Command } from 'commander';
import { action, client, parsePairs, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printPairs, say } from './output.js';

interface NsOptions extends CommonOptions {
  ns: string;
}

const repeat = (v: string, prev: string[] = []) => [...prev, v];

function withNs(cmd: Command): Command {
  return withFormat(cmd).option('--ns <namespace>', 'namespace', 'default');
}

interface HealthEntry {
  service: { id: string; address: string; port: number; tags: string[] };
  status: string;
  checks: { check_id: string; status: string; output: string }[];
}

function printEntries(entries: HealthEntry[]): void {
  if (entries.length === 0) return say('(no instances)');
  const rows = entries.map((e) => [e.service.id, `${e.service.address}:${e.service.port}`, e.status, e.service.tags.join(',')]);
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['ID', 'ADDRESS', 'STATUS'][i]!.length));
  const line = (r: string[]) => r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join('  ').trimEnd();
  say(line(['ID', 'ADDRESS', 'STATUS', 'TAGS']));
  for (const r of rows) say(line(r));
}

/** `aegis catalog …` and `aegis watch service`: the service catalog over catalog/ and health/. */
export function registerCatalog(program: Command): void {
  const catalog = program.command('catalog').description('register services and instances, and list what is registered');

  withNs(catalog.command('services'))
    .description('the services of a namespace and their tags')
    .action(action(async (o: NsOptions) => {
      const body = (await client().ok('GET', 'catalog/services', { query: { ns: o.ns } })).body as Record<string, string[]>;
      if (o.format === 'json') return printJson(body);
      const names = Object.keys(body).sort();
      if (names.length === 0) return say(`(no services in namespace ${o.ns})`);
      printPairs(names.map((n) => [n, body[n]!.join(',')]), false);
      return undefined;
    }));

  withNs(catalog.command('instances'))
    .description('the instances of a service with their health')
    .argument('<service>', 'service name')
    .option('--passing', 'only instances whose checks all pass')
    .action(action(async (service: string, o: NsOptions & { passing?: boolean }) => {
      const body = (await client().ok('GET', `health/service/${o.ns}/${service}`, { query: o.passing ? { passing: 'true' } : {} })).body as unknown as HealthEntry[];
      if (o.format === 'json') return printJson(body);
      printEntries(body);
      return undefined;
    }));

  withNs(catalog.command('register'))
    .description('register (or replace) an instance of a service')
    .argument('<service>', 'service name (a DNS label)')
    .requiredOption('--id <id>', 'instance id, unique in the namespace')
    .requiredOption('--address <address>', 'IP address or host name')
    .requiredOption('--port <port>', 'port')
    .option('--tag <tag>', 'tag (repeatable)', repeat)
    .option('--meta <k=v>', 'metadata (repeatable)', repeat)
    .option('--http <url>', 'an HTTP health check on this URL')
    .option('--tcp <host:port>', 'a TCP health check')
    .option('--ttl <duration>', 'a TTL health check: the instance reports with `aegis catalog check`')
    .option('--interval <duration>', 'check interval', '10s')
    .option('--timeout <duration>', 'check timeout')
    .option('--deregister-critical-after <duration>', 'deregister after being critical this long')
    .action(action(async (service: string, o: NsOptions & Record<string, string | string[] | undefined>) => {
      const kinds = ['http', 'tcp', 'ttl'].filter((k) => o[k]);
      if (kinds.length > 1) throw new CliError('give at most one of --http, --tcp, --ttl', 2);
      const check: Record<string, unknown> | undefined = kinds.length === 0 ? undefined : {
        [kinds[0]!]: o[kinds[0]!],
        ...(kinds[0] !== 'ttl' ? { interval: o.interval, ...(o.timeout ? { timeout: o.timeout } : {}) } : {}),
        ...(o.deregisterCriticalAfter ? { deregister_critical_after: o.deregisterCriticalAfter } : {}),
      };
      const body = {
        address: o.address, port: o.port, tags: o.tag ?? [], meta: parsePairs((o.meta as string[] | undefined) ?? [], '--meta'),
        ...(check ? { check } : {}),
      };
      const res = await client().ok('PUT', `catalog/service/${o.ns}/${service}/${o.id}`, { body });
      if (o.format === 'json') return printJson(res.body);
      say(`Success! Registered ${o.id} of service ${service} in namespace ${o.ns}`);
      return undefined;
    }));

  withNs(catalog.command('deregister'))
    .description('remove an instance')
    .argument('<service>', 'service name')
    .argument('<id>', 'instance id')
    .action(action(async (service: string, id: string, o: NsOptions) => {
      await client().ok('DELETE', `catalog/service/${o.ns}/${service}/${id}`);
      say(`Success! Deregistered ${id} of service ${service} in namespace ${o.ns}`);
    }));

  withNs(catalog.command('check'))
    .description('report a TTL check: pass, warn or fail')
    .argument('<check_id>', 'e.g. service:web-1')
    .argument('<status>', 'pass, warn or fail')
    .option('--output <text>', 'what the check saw')
    .action(action(async (checkId: string, status: string, o: NsOptions & { output?: string }) => {
      await client().ok('PUT', `health/check/${o.ns}/${checkId}`, { body: { status, output: o.output ?? '' } });
      say(`Success! ${checkId}: ${status}`);
    }));

  const watch = program.command('watch').description('follow changes as they happen');
  withNs(watch.command('service'))
    .description('print the instances of a service now and after every change (blocking queries); Ctrl-C stops')
    .argument('<service>', 'service name')
    .option('--passing', 'only instances whose checks all pass')
    .option('--count <n>', 'stop after this many updates (default: never)')
    .action(action(async (service: string, o: NsOptions & { passing?: boolean; count?: string }) => {
      const api = client();
      const limit = o.count === undefined ? Infinity : Number(o.count);
      if (!Number.isInteger(limit) || limit < 1) throw new CliError('--count must be a whole number ≥ 1', 2);
      let index = 0;
      for (let n = 0; n < limit;) {
        // The client gives up on a request after 60 s, so each blocking query waits at most 50 s.
        const query: Record<string, string> = { index: String(index), wait: '50s', ...(o.passing ? { passing: 'true' } : {}) };
        const res = await api.ok('GET', `health/service/${o.ns}/${service}`, { query });
        const next = Number(res.headers['x-aegis-index'] ?? 0);
        if (next === index) continue;
        index = next;
        n++;
        const entries = res.body as unknown as HealthEntry[];
        if (o.format === 'json') {
          process.stdout.write(`${JSON.stringify({ index, instances: entries })}\n`);
        } else {
          say(`--- ${new Date().toISOString()} index ${index}`);
          printEntries(entries);
        }
      }
    }));
}

import type { Command } from 'commander';
import { action, client, withFormat, type CommonOptions } from './command.js';
import { printJson, printPairs, say } from './output.js';

export function registerSecrets(program: Command): void {
  const secrets = program.command('secrets').description('enable, disable and list secrets engines');

  secrets.command('enable')
    .description('mount a secrets engine (types: kv, transit, database)')
    .argument('<type>', 'engine type, e.g. kv or kv-v2')
    .option('--path <path>', 'mount path (default: the type)')
    .option('--description <text>', 'what the mount is for')
    .action(action(async (type: string, o: { path?: string; description?: string }) => {
      const path = (o.path ?? type).replace(/\/+$/, '');
      await client().ok('POST', `sys/mounts/${path}`, { body: { type, description: o.description ?? '', options: type.startsWith('kv') ? { version: '2' } : {} } });
      say(`Success! Enabled the ${type} secrets engine at: ${path}/`);
    }));

  secrets.command('disable')
    .description('unmount a secrets engine and delete all of its data')
    .argument('<path>', 'mount path')
    .action(action(async (path: string) => {
      await client().ok('DELETE', `sys/mounts/${path.replace(/\/+$/, '')}`);
      say(`Success! Disabled the secrets engine (if it existed) at: ${path}`);
    }));

  withFormat(secrets.command('list'))
    .description('list mounted secrets engines')
    .action(action(async (o: CommonOptions) => {
      const d = (await client().ok('GET', 'sys/mounts')).body!.data as Record<string, { type: string; description: string }>;
      if (o.format === 'json') return printJson(d);
      printPairs(Object.entries(d).map(([p, m]) => [p, `${m.type}  ${m.description}`]), false);
      return undefined;
    }));
}

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { verifyAuditLog } from '../audit/index.js';
import { action, client, parsePairs, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printPairs, say } from './output.js';

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('enable, list, disable and verify audit devices');

  audit.command('enable')
    .description('enable an audit device: `aegis audit enable file file_path=/var/log/aegis/audit.log` (needs sudo)')
    .argument('<type>', 'file or stdout')
    .argument('[options...]', 'key=value options, e.g. file_path=/abs/path mode=0600')
    .option('--path <name>', 'device name (default: the type)')
    .option('--description <text>', 'what the device is for')
    .action(action(async (type: string, options: string[], o: { path?: string; description?: string }) => {
      const name = o.path ?? type;
      await client().ok('PUT', `sys/audit/${name}`, { body: { type, description: o.description ?? '', options: parsePairs(options, 'option') } });
      say(`Success! Enabled the ${type} audit device at: ${name}/`);
    }));

  withFormat(audit.command('list'))
    .description('list enabled audit devices (needs sudo)')
    .action(action(async (o: CommonOptions) => {
      const d = (await client().ok('GET', 'sys/audit')).body!.data as Record<string, { type: string; description: string; options: Record<string, string> }>;
      if (o.format === 'json') return printJson(d);
      if (Object.keys(d).length === 0) return say('No audit devices are enabled.');
      printPairs(Object.entries(d).map(([p, v]) => [p, `${v.type} ${JSON.stringify(v.options)} ${v.description}`.trim()]));
      return undefined;
    }));

  audit.command('disable')
    .description('disable an audit device (needs sudo)')
    .argument('<name>', 'device name')
    .action(action(async (name: string) => {
      await client().ok('DELETE', `sys/audit/${name.replace(/\/$/, '')}`);
      say(`Success! Disabled audit device (if it was enabled): ${name}`);
    }));

  withFormat(audit.command('hash'))
    .description("HMAC a value with a device's key, to search its log for a token or secret")
    .argument('<device>', 'device name')
    .argument('<value>', 'the value')
    .action(action(async (device: string, value: string, o: CommonOptions) => {
      const d = (await client().ok('POST', `sys/audit-hash/${device}`, { body: { input: value } })).body!.data as { hash: string };
      if (o.format === 'json') return printJson(d);
      say(d.hash);
      return undefined;
    }));

  withFormat(audit.command('verify'))
    .description('check the hash chain of an audit log file offline; names the first edited, deleted, inserted or reordered line; exits 1 if broken')
    .argument('<file>', 'audit log file')
    .option('--partial', 'the file starts mid-chain (after log rotation): trust its first line')
    .action(action(async (file: string, o: CommonOptions & { partial?: boolean }) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      const r = verifyAuditLog(text, { partial: o.partial });
      if (o.format === 'json') printJson(r);
      else if (r.ok) say(`OK: ${file}: ${r.message}`);
      if (!r.ok) {
        if (o.format !== 'json') process.stderr.write(`Error: ${file}: ${r.message}\n`);
        return 1;
      }
      return 0;
    }));
}

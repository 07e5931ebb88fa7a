import type { Command } from 'commander';
import { action, client, withFormat, wholeNumber, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printPairs, say } from './output.js';
import { readSecret } from './prompt.js';

function sealPairs(s: Record<string, unknown>): [string, unknown][] {
  const pairs: [string, unknown][] = [
    ['Seal Type', s.type], ['Initialized', s.initialized], ['Sealed', s.sealed],
    ['Total Shares', s.n], ['Threshold', s.t],
  ];
  if (s.sealed) pairs.push(['Unseal Progress', `${s.progress}/${s.t}`], ['Unseal Nonce', s.nonce || 'n/a']);
  pairs.push(['Version', s.version], ['Storage Type', s.storage_type]);
  return pairs;
}

export function registerOperator(program: Command): void {
  const op = program.command('operator').description('initialize, unseal, seal and rotate keys');

  withFormat(op.command('init'))
    .description('initialize a new server: prints the unseal key shares and the initial root token, once')
    .option('--key-shares <n>', 'number of unseal key shares', '5')
    .option('--key-threshold <n>', 'shares needed to unseal', '3')
    .option('--trust-domain <name>', 'trust domain of the workload CA', 'aegis.local')
    .option('--ca-key-type <type>', 'CA key type: p256 or p384', 'p256')
    .action(action(async (o: CommonOptions & { keyShares: string; keyThreshold: string; trustDomain: string; caKeyType: string }) => {
      const body = {
        secret_shares: wholeNumber(o.keyShares, '--key-shares'), secret_threshold: wholeNumber(o.keyThreshold, '--key-threshold'),
        trust_domain: o.trustDomain, ca_key_type: o.caKeyType,
      };
      const res = await client().ok('PUT', 'sys/init', { body, auth: false });
      const r = res.body as { keys: string[]; keys_base64: string[]; root_token: string };
      if (o.format === 'json') return printJson(r);
      r.keys.forEach((k, i) => say(`Unseal Key ${i + 1}: ${k}`));
      say('');
      say(`Initial Root Token: ${r.root_token}`);
      say('');
      say(`Aegis initialized with ${body.secret_shares} key shares and a key threshold of ${body.secret_threshold}; trust domain ${body.trust_domain}.`);
      say('These keys and this token are shown only now: distribute the shares to different trusted operators.');
      say(`Unseal with \`aegis operator unseal\` (${body.secret_threshold} times, one share each) unless an auto-unseal key file is configured.`);
    }));

  withFormat(op.command('unseal'))
    .description('submit one unseal key share (prompted for when not given); shows progress')
    .argument('[key]', 'the share (hex or base64); omit to be prompted without echo')
    .option('--reset', 'discard the shares submitted so far')
    .action(action(async (key: string | undefined, o: CommonOptions & { reset?: boolean }) => {
      const body = o.reset ? { reset: true } : { key: key ?? (await readSecret('Unseal Key (will be hidden): ')) };
      if (!o.reset && !body.key) throw new CliError('no unseal key given', 2);
      const s = (await client().ok('PUT', 'sys/unseal', { body, auth: false })).body!;
      if (o.format === 'json') return printJson(s);
      printPairs(sealPairs(s));
      return undefined;
    }));

  op.command('seal')
    .description('seal the server: it forgets its keys until unsealed again (needs sudo)')
    .action(action(async () => {
      await client().ok('PUT', 'sys/seal');
      say('Success! Aegis is sealed.');
    }));

  op.command('rotate')
    .description('add a new encryption key term; new writes use it, old data stays readable')
    .action(action(async () => {
      const c = client();
      await c.ok('PUT', 'sys/rotate');
      const k = (await c.ok('GET', 'sys/key-status')).body!.data as { term: number; install_time: string };
      say(`Success! Rotated key: term ${k.term}, installed ${k.install_time}`);
    }));

  withFormat(op.command('key-status'))
    .description('the active encryption key term')
    .action(action(async (o: CommonOptions) => {
      const k = (await client().ok('GET', 'sys/key-status')).body!.data as Record<string, unknown>;
      if (o.format === 'json') return printJson(k);
      printPairs([['Key Term', k.term], ['Install Time', k.install_time], ['Terms', k.terms]]);
      return undefined;
    }));

  withFormat(program.command('status'))
    .description('seal status of the server; exit code 0 unsealed, 2 sealed, 1 error')
    .action(action(async (o: CommonOptions) => {
      const s = (await client().ok('GET', 'sys/seal-status', { auth: false })).body!;
      if (o.format === 'json') printJson(s);
      else printPairs(sealPairs(s));
      return s.sealed ? 2 : 0;
    }));
}

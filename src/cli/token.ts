import type { Command } from 'commander';
import { action, client, parsePairs, wholeNumber, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printPairs, say } from './output.js';

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];

function authPairs(a: Record<string, unknown>): [string, unknown][] {
  return [
    ['token', a.client_token], ['token_accessor', a.accessor], ['token_duration', a.lease_duration === 0 ? '∞' : `${a.lease_duration}s`],
    ['token_renewable', a.renewable], ['token_policies', a.policies], ['token_meta', a.metadata], ['orphan', a.orphan], ['num_uses', a.num_uses],
  ];
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('create, look up, renew and revoke tokens');

  withFormat(token.command('create'))
    .description('create a child token of the current one (policies must be a subset of its own, unless root)')
    .option('--policy <name>', 'policy to attach (repeat or comma-separate)', collect)
    .option('--ttl <duration>', 'time to live, e.g. 1h')
    .option('--explicit-max-ttl <duration>', 'hard cap on life including renewals')
    .option('--num-uses <n>', 'number of requests the token may make (0 = unlimited)')
    .option('--metadata <k=v>', 'metadata pair (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--display-name <name>', 'name shown in logs')
    .option('--orphan', 'no parent: survives the revocation of the current token (needs root or sudo)')
    .option('--no-default-policy', 'do not attach the default policy')
    .option('--no-renewable', 'the token cannot be renewed')
    .option('--id <id>', 'custom token ID (root only)')
    .action(action(async (o: CommonOptions & Record<string, unknown>) => {
      const body: Record<string, unknown> = {};
      if (o.policy) body.policies = o.policy;
      if (o.ttl) body.ttl = o.ttl;
      if (o.explicitMaxTtl) body.explicit_max_ttl = o.explicitMaxTtl;
      if (o.numUses) body.num_uses = wholeNumber(o.numUses as string, '--num-uses');
      if (o.metadata) body.meta = parsePairs(o.metadata as string[], '--metadata');
      if (o.displayName) body.display_name = o.displayName;
      if (o.orphan) body.no_parent = true;
      if (o.defaultPolicy === false) body.no_default_policy = true;
      if (o.renewable === false) body.renewable = false;
      if (o.id) body.id = o.id;
      const res = await client().ok('POST', 'auth/token/create', { body });
      if (o.format === 'json') return printJson(res.body);
      for (const w of (res.body!.warnings as string[] | null) ?? []) process.stderr.write(`Warning: ${w}\n`);
      printPairs(authPairs(res.body!.auth as Record<string, unknown>));
      return undefined;
    }));

  withFormat(token.command('lookup'))
    .description('show a token (the current one when none is given)')
    .argument('[token]', 'token ID, or accessor with --accessor')
    .option('--accessor', 'the argument is an accessor')
    .action(action(async (value: string | undefined, o: CommonOptions & { accessor?: boolean }) => {
      const c = client();
      let res;
      if (!value) res = await c.ok('GET', 'auth/token/lookup-self');
      else if (o.accessor) res = await c.ok('POST', 'auth/token/lookup-accessor', { body: { accessor: value } });
      else res = await c.ok('POST', 'auth/token/lookup', { body: { token: value } });
      if (o.format === 'json') return printJson(res.body);
      const d = res.body!.data as Record<string, unknown>;
      printPairs(Object.keys(d).sort().map((k) => [k, d[k]]));
      return undefined;
    }));

  withFormat(token.command('renew'))
    .description('renew a token (the current one when none is given)')
    .argument('[token]', 'token ID, or accessor with --accessor')
    .option('--accessor', 'the argument is an accessor')
    .option('-i, --increment <duration>', 'requested extension, e.g. 1h')
    .action(action(async (value: string | undefined, o: CommonOptions & { accessor?: boolean; increment?: string }) => {
      const body: Record<string, unknown> = o.increment ? { increment: o.increment } : {};
      const c = client();
      let res;
      if (!value) res = await c.ok('POST', 'auth/token/renew-self', { body });
      else if (o.accessor) res = await c.ok('POST', 'auth/token/renew-accessor', { body: { ...body, accessor: value } });
      else res = await c.ok('POST', 'auth/token/renew', { body: { ...body, token: value } });
      if (o.format === 'json') return printJson(res.body);
      printPairs(authPairs(res.body!.auth as Record<string, unknown>));
      return undefined;
    }));

  token.command('revoke')
    .description('revoke a token and every token created from it')
    .argument('[token]', 'token ID, or accessor with --accessor')
    .option('--accessor', 'the argument is an accessor')
    .option('--self', 'revoke the current token')
    .option('--mode <mode>', '"orphan": revoke only this token; its children become orphans')
    .action(action(async (value: string | undefined, o: { accessor?: boolean; self?: boolean; mode?: string }) => {
      const c = client();
      if (o.self) await c.ok('POST', 'auth/token/revoke-self');
      else if (!value) throw new CliError('name the token to revoke, or pass --self', 2);
      else if (o.mode === 'orphan') await c.ok('POST', 'auth/token/revoke-orphan', { body: { token: value } });
      else if (o.mode !== undefined) throw new CliError('--mode accepts only "orphan"', 2);
      else if (o.accessor) await c.ok('POST', 'auth/token/revoke-accessor', { body: { accessor: value } });
      else await c.ok('POST', 'auth/token/revoke', { body: { token: value } });
      say('Success! Revoked token (if it existed)');
    }));

  withFormat(token.command('capabilities'))
    .description("what the current token may do on a path")
    .argument('<path>', 'API path, e.g. secret/data/app')
    .action(action(async (path: string, o: CommonOptions) => {
      const res = await client().ok('POST', 'sys/capabilities-self', { body: { path } });
      const caps = (res.body!.data as Record<string, string[]>).capabilities!;
      if (o.format === 'json') return printJson(caps);
      say(caps.join(', '));
      return undefined;
    }));
}

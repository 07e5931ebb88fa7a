import type { Command } from 'commander';
import { action, client, listKeys, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printList, printPairs, say } from './output.js';

/** `aegis lease …`: Vault's lease commands over sys/leases/*. */
export function registerLease(program: Command): void {
  const lease = program.command('lease').description('look up, renew and revoke the leases of dynamic secrets');

  withFormat(lease.command('lookup'))
    .description('show a lease\'s expiry and remaining TTL')
    .argument('<lease_id>', 'e.g. database/creds/app/<id>')
    .action(action(async (id: string, o: CommonOptions) => {
      const d = (await client().ok('PUT', 'sys/leases/lookup', { body: { lease_id: id } })).body!.data as Record<string, unknown>;
      if (o.format === 'json') return printJson(d);
      printPairs(['id', 'issue_time', 'expire_time', 'last_renewal', 'renewable', 'ttl'].map((k) => [k, k === 'ttl' ? `${d[k]}s` : d[k]]));
      return undefined;
    }));

  withFormat(lease.command('renew'))
    .description('extend a lease (by its original TTL unless --increment)')
    .argument('<lease_id>', 'e.g. database/creds/app/<id>')
    .option('--increment <duration>', 'extend by this much from now, e.g. 1h')
    .action(action(async (id: string, o: CommonOptions & { increment?: string }) => {
      const body = (await client().ok('PUT', 'sys/leases/renew', { body: { lease_id: id, ...(o.increment ? { increment: o.increment } : {}) } })).body!;
      if (o.format === 'json') return printJson(body);
      printPairs([['lease_id', body.lease_id], ['lease_duration', `${body.lease_duration}s`], ['lease_renewable', body.renewable]]);
      for (const w of (body.warnings as string[] | null) ?? []) process.stderr.write(`WARNING: ${w}\n`);
      return undefined;
    }));

  lease.command('revoke')
    .description('revoke a lease now, or every lease under a prefix')
    .argument('<lease_id_or_prefix>', 'a lease ID, or with --prefix a path such as database/creds/app/')
    .option('--prefix', 'revoke every lease under the prefix (needs sudo)')
    .option('--force', 'with --prefix: drop the leases even if the engine cannot revoke the secrets (needs sudo)')
    .option('--no-sync', 'queue the revocation and return at once')
    .action(action(async (id: string, o: { prefix?: boolean; force?: boolean; sync: boolean }) => {
      if (o.force && !o.prefix) throw new CliError('--force needs --prefix', 2);
      const api = client();
      if (o.prefix) {
        const res = await api.ok('PUT', `sys/leases/${o.force ? 'revoke-force' : 'revoke-prefix'}/${id.replace(/^\/+/, '')}`);
        const n = (res.body?.data as { revoked?: number } | undefined)?.revoked ?? 0;
        return say(`Success! Revoked ${n} lease(s) under: ${id}${o.force ? ' (forced)' : ''}`);
      }
      await api.ok('PUT', 'sys/leases/revoke', { body: { lease_id: id, sync: o.sync } });
      say(o.sync ? `Success! Revoked lease: ${id}` : `Success! Revocation queued for lease: ${id}`);
      return undefined;
    }));

  withFormat(lease.command('list'))
    .description('list lease IDs under a prefix (one level)')
    .argument('<prefix>', 'e.g. database/creds/app/')
    .action(action(async (prefix: string, o: CommonOptions) => {
      const p = prefix.replace(/^\/+/, '').replace(/\/*$/, '/');
      const keys = await listKeys(`sys/leases/lookup/${p}`, `no leases under ${p}`);
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));

  withFormat(lease.command('failing'))
    .description('leases whose revocation failed and is being retried (needs sudo)')
    .action(action(async (o: CommonOptions) => {
      const d = (await client().ok('GET', 'sys/leases')).body!.data as { lease_count: number; failing: Record<string, unknown>[] };
      if (o.format === 'json') return printJson(d);
      say(`${d.lease_count} live lease(s), ${d.failing.length} failing revocation(s)`);
      for (const f of d.failing) printPairs(Object.entries(f), false);
      return undefined;
    }));
}

import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { writeSvidFiles } from '../identity/agent/index.js';
import { makeKeyAndCsr } from '../identity/csr-make.js';
import { fromPem } from '../identity/pem.js';
import type { SvidResult } from '../identity/service.js';
import { CliError } from './client.js';
import { action, client, withFormat, type CommonOptions } from './command.js';
import { printJson, printPairs } from './output.js';

export function registerIdentity(program: Command): void {
  const id = program.command('identity').description('workload identity: join tokens, SVIDs, revocation');

  const jt = id.command('join-token').description('single-use join tokens that attest one workload');
  withFormat(jt.command('create'))
    .description('create a join token bound to spiffe://<trust-domain>/ns/<namespace>/svc/<service>')
    .requiredOption('--service <name>', 'service name of the workload')
    .option('--namespace <name>', 'namespace of the workload', 'default')
    .option('--ttl <duration>', 'how long the token may be used', '10m')
    .action(action(async (o: CommonOptions & { service: string; namespace: string; ttl: string }) => {
      const res = await client().ok('POST', 'identity/join-token', { body: { service: o.service, namespace: o.namespace, ttl: o.ttl } });
      const d = (res.body as { data: { token: string; spiffe_id: string; expiration: number } }).data;
      if (o.format === 'json') return printJson(d);
      printPairs([['token', d.token], ['spiffe_id', d.spiffe_id], ['expiration', new Date(d.expiration * 1000).toISOString()]]);
    }));

  withFormat(id.command('svid'))
    .description('attest (join token or JWT), get an X.509-SVID and write svid.pem, svid_key.pem, bundle.pem (the key is made here)')
    .requiredOption('--out <dir>', 'directory to write the files to')
    .option('--join-token <token>', 'a join token (from `aegis identity join-token create`)')
    .option('--jwt-file <file>', 'a JWT from an OIDC issuer configured as a JWT attestor')
    .option('--attestor <name>', 'the JWT attestor to use with --jwt-file')
    .option('--service <name>', 'expected service (refused if the join token is bound to another)')
    .option('--namespace <name>', 'expected namespace')
    .option('--ttl <duration>', 'certificate lifetime (5m … 24h)')
    .action(action(async (o: CommonOptions & { out: string; joinToken?: string; jwtFile?: string; attestor?: string; service?: string; namespace?: string; ttl?: string }) => {
      if (!o.joinToken === !o.jwtFile) throw new CliError('give exactly one of --join-token or --jwt-file', 2);
      if (o.jwtFile && !o.attestor) throw new CliError('--jwt-file needs --attestor NAME', 2);
      const { keyPkcs8, csrPem } = await makeKeyAndCsr();
      let res;
      if (o.joinToken) {
        res = await client().ok('POST', 'identity/attest/join-token', {
          body: { join_token: o.joinToken, csr: csrPem, service: o.service, namespace: o.namespace, ttl: o.ttl }, auth: false,
        });
      } else {
        let jwt: string;
        try {
          jwt = (await readFile(o.jwtFile!, 'utf8')).trim();
        } catch (err) {
          throw new CliError(`cannot read ${o.jwtFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 2);
        }
        res = await client().ok('POST', 'identity/attest/jwt', { body: { attestor: o.attestor, jwt, csr: csrPem, ttl: o.ttl }, auth: false });
      }
      const r = (res.body as { data: SvidResult }).data;
      await writeSvidFiles(o.out, {
        trustDomain: new URL(r.spiffe_id).host,
        svid: { spiffeId: r.spiffe_id, chain: fromPem([r.certificate, ...r.ca_chain].join('\n')), key: keyPkcs8, expiresAt: new Date(r.expiration * 1000) },
        bundle: fromPem(r.bundle), crl: [], jwtBundle: Buffer.from('{"keys":[]}'),
      });
      if (o.format === 'json') return printJson({ spiffe_id: r.spiffe_id, serial_number: r.serial_number, expiration: r.expiration, out: o.out });
      printPairs([['spiffe_id', r.spiffe_id], ['serial_number', r.serial_number], ['expiration', new Date(r.expiration * 1000).toISOString()], ['files', `${o.out}/{svid.pem,svid_key.pem,bundle.pem}`]]);
    }));

  withFormat(id.command('revoke'))
    .description('revoke one certificate, or every certificate of a SPIFFE ID (refused by proxies and in the CRL)')
    .option('--serial <serial>', 'serial number, as issued (3a:0f:…)')
    .option('--spiffe-id <id>', 'a SPIFFE ID of this trust domain')
    .action(action(async (o: CommonOptions & { serial?: string; spiffeId?: string }) => {
      if (!o.serial === !o.spiffeId) throw new CliError('give exactly one of --serial or --spiffe-id', 2);
      const res = await client().ok('POST', 'identity/revoke', { body: o.serial ? { serial_number: o.serial } : { spiffe_id: o.spiffeId } });
      const d = (res.body as { data: Record<string, unknown> }).data;
      if (o.format === 'json') return printJson(d);
      printPairs(Object.entries(d));
    }));

  id.command('bundle')
    .description('print the trust bundle (root certificates, PEM)')
    .action(action(async () => {
      const res = await client().ok('GET', 'identity/bundle', { auth: false });
      process.stdout.write(res.text);
    }));
}

import { resolve } from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { parseDuration } from '../core/duration.js';
import { Agent } from '../identity/agent/index.js';
import { createLogger } from '../telemetry/index.js';
import { CliError } from './client.js';
import { action } from './command.js';

export function registerAgent(program: Command): void {
  program.command('agent')
    .description('attest once, then serve the SPIFFE Workload API on a unix socket and keep the SVID renewed')
    .option('--join-token <token>', 'attest with a join token')
    .option('--jwt-file <file>', 'attest with a JWT from a configured OIDC issuer')
    .option('--attestor <name>', 'the JWT attestor to use with --jwt-file')
    .option('--service <name>', 'expected service of the join token')
    .option('--namespace <name>', 'expected namespace of the join token')
    .option('--socket <path>', 'Workload API socket', '/tmp/aegis-agent/agent.sock')
    .option('--write-dir <dir>', 'also write svid.pem, svid_key.pem and bundle.pem here (atomically, on every renewal)')
    .option('--ttl <duration>', 'SVID lifetime to ask for (5m … 24h; default the server’s, 1h)')
    .option('--log-level <level>', 'log level (logs go to stderr)', 'info')
    .action(action(async (o: { joinToken?: string; jwtFile?: string; attestor?: string; service?: string; namespace?: string; socket: string; writeDir?: string; ttl?: string; logLevel: string }) => {
      if (!o.joinToken === !o.jwtFile) throw new CliError('give exactly one of --join-token or --jwt-file', 2);
      if (o.jwtFile && !o.attestor) throw new CliError('--jwt-file needs --attestor NAME', 2);
      let ttlSeconds: number | undefined;
      try {
        ttlSeconds = o.ttl ? parseDuration(o.ttl, '--ttl') : undefined;
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      const logger = createLogger(o.logLevel, pino.destination(2));
      const agent = new Agent({
        address: process.env.AEGIS_ADDR ?? 'https://127.0.0.1:8200',
        caFile: process.env.AEGIS_CACERT,
        attestation: o.joinToken ? { joinToken: o.joinToken, service: o.service, namespace: o.namespace } : { jwtFile: resolve(o.jwtFile!), attestor: o.attestor! },
        socketPath: resolve(o.socket), writeDir: o.writeDir ? resolve(o.writeDir) : undefined, ttlSeconds, logger,
      });
      await agent.start();
      process.stdout.write(`Agent serving ${agent.spiffeId} on unix://${resolve(o.socket)}\n`);
      await new Promise<void>((done) => {
        const stop = () => void agent.stop().finally(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      process.exit(0);
    }));
}

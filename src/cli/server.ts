import type { Command } from 'commander';
import { ConfigError, loadConfigFile } from '../server/config.js';
import { startServer, type RunningServer } from '../server/server.js';
import { createLogger } from '../telemetry/index.js';
import { action } from './command.js';
import { CliError } from './client.js';
import { say } from './output.js';

/** Stops the server cleanly on SIGINT/SIGTERM, then runs `after`. */
export function stopOnSignals(server: RunningServer, after: () => void = () => undefined): Promise<void> {
  return new Promise((resolve) => {
    const stop = async (signal: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      server.logger.info({ signal }, 'shutting down');
      await server.close().catch(() => undefined);
      after();
      resolve();
    };
    const onInt = () => void stop('SIGINT');
    const onTerm = () => void stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
}

export function registerServer(program: Command): void {
  program.command('server')
    .description('run an Aegis server from a JSON config file')
    .requiredOption('-c, --config <file>', 'config file (JSON)')
    .action(action(async (o: { config: string }) => {
      let server: RunningServer;
      try {
        const cfg = loadConfigFile(o.config);
        server = await startServer(cfg, createLogger(cfg.logLevel));
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message);
        throw new CliError(`server did not start: ${(err as Error).message}`);
      }
      const s = server.core.sealStatus();
      say(`Aegis server listening on ${server.address}`);
      if (server.caFile) say(`  TLS CA (for clients): export AEGIS_CACERT=${server.caFile}`);
      say(`  initialized: ${s.initialized}, sealed: ${s.sealed}`);
      if (!s.initialized) say(`  next: AEGIS_ADDR=${server.address} aegis operator init --key-shares 5 --key-threshold 3`);
      else if (s.sealed) say(`  next: AEGIS_ADDR=${server.address} aegis operator unseal   (${s.t} shares needed)`);
      await stopOnSignals(server);
    }));
}

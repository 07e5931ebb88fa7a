import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { pino } from 'pino';
import { KeyFileUnseal } from '../core/seal/index.js';
import { defaultConfig, isLoopback, parseAddress, ConfigError } from '../server/config.js';
import { startServer } from '../server/server.js';
import { createLogger } from '../telemetry/index.js';
import { action } from './command.js';
import { CliError } from './client.js';
import { stopOnSignals } from './server.js';

const BIN = resolve(fileURLToPath(new URL('../../bin/aegis.js', import.meta.url)));

export function registerDev(program: Command): void {
  program.command('dev')
    .description('run a development server: plain HTTP on loopback, SQLite in a data dir, auto-unsealed, a file audit log')
    .option('--listen <address>', 'loopback address to listen on', '127.0.0.1:8200')
    .option('--root-token <id>', 'use this root token ID (default: random)')
    .option('--data-dir <dir>', 'keep data here (default: a temporary folder removed on exit)')
    .option('--log-level <level>', 'log level (logs go to stderr)', 'info')
    .option('--trust-domain <name>', 'trust domain of the workload CA', 'aegis.local')
    .option('--dns-listen <address>', 'the catalog\'s DNS interface (UDP); "off" turns it off', '127.0.0.1:8600')
    .option('--tls', 'serve HTTPS with a self-made CA instead of HTTP (what `aegis agent` needs: it renews SVIDs over mutual TLS)')
    .action(action(async (o: { listen: string; rootToken?: string; dataDir?: string; logLevel: string; trustDomain: string; tls?: boolean; dnsListen: string }) => {
      let host: string;
      try {
        host = parseAddress(o.listen).host;
      } catch (err) {
        throw new CliError((err as ConfigError).message, 2);
      }
      if (!isLoopback(host)) throw new CliError(`the dev server listens only on loopback; ${o.listen} is not`, 2);
      const temp = !o.dataDir;
      const dataDir = o.dataDir ? resolve(o.dataDir) : mkdtempSync(join(tmpdir(), 'aegis-dev-'));
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const keyFile = join(dataDir, 'dev-unseal.key');
      if (!existsSync(keyFile)) KeyFileUnseal.generate(keyFile);

      const cfg = defaultConfig(dataDir);
      cfg.listener.address = o.listen;
      cfg.listener.tlsDisable = !o.tls;
      cfg.storage.synchronous = 'normal';
      cfg.sealKeyFile = keyFile;
      cfg.dnsAddress = o.dnsListen === 'off' ? null : o.dnsListen;
      const logger = createLogger(o.logLevel, pino.destination(2));
      let server;
      try {
        server = await startServer(cfg, logger);
      } catch (err) {
        if (temp) rmSync(dataDir, { recursive: true, force: true });
        throw new CliError(`dev server did not start: ${(err as Error).message}`);
      }
      const core = server.core;
      let rootToken = o.rootToken ?? null;
      let unsealKey: string | null = null;
      const auditLog = join(dataDir, 'audit.log');
      if (!core.seal.initialized) {
        const r = await core.initialize(1, 1, { rootTokenId: o.rootToken, trustDomain: o.trustDomain });
        rootToken = r.rootToken;
        unsealKey = r.keys[0]!.toString('base64');
        await core.audit.enable({ name: 'file', type: 'file', description: 'dev audit log', options: { file_path: auditLog } });
      } else if (o.rootToken && !(await core.tokens.lookup(o.rootToken))) {
        await core.tokens.create({ id: o.rootToken, policies: ['root'], parent: null, ttl: 0, explicitMaxTtl: 0, numUses: 0, renewable: false, displayName: 'root', path: 'auth/token/root' });
      }

      const rel = relative(process.cwd(), BIN);
      const cli = rel.startsWith('..') ? BIN : `./${rel}`;
      // One write, so whoever reads the banner (a person, or a script waiting for it) gets it whole.
      const banner = [
        `Aegis dev server is running. Do not use it in production: ${o.tls ? 'a self-made TLS CA' : 'HTTP'}, one unseal key, data in a scratch folder.`,
        '',
        `  Address:     ${server.address}`,
        ...(server.caFile ? [`  TLS CA:      ${server.caFile}`] : []),
        `  Root token:  ${rootToken ?? '(created on the first start of this data dir; pass --root-token to set one)'}`,
        ...(unsealKey ? [`  Unseal key:  ${unsealKey}   (auto-unsealed from ${keyFile})`] : []),
        `  Data dir:    ${dataDir}${temp ? '   (removed on exit)' : ''}`,
        `  Audit log:   ${auditLog}`,
        ...(server.dns ? [`  DNS:         ${server.dns.address}:${server.dns.port}   (dig @${server.dns.address} -p ${server.dns.port} web.service.aegis)`] : []),
        '',
        'Try, in another terminal:',
        `  export AEGIS_ADDR=${server.address}${rootToken ? ` AEGIS_TOKEN=${rootToken}` : ''}${server.caFile ? ` AEGIS_CACERT=${server.caFile}` : ''}`,
        `  ${cli} kv put secret/hello who=world`,
        `  ${cli} kv get secret/hello`,
        `  ${cli} token create --policy default --ttl 1h`,
        `  ${cli} catalog register web --id web-1 --address 127.0.0.1 --port 8080`,
        `  ${cli} identity join-token create --service web`,
        `  ${cli} identity svid --join-token <token> --out ./web-svid`,
        `  ${cli} audit verify ${auditLog}`,
      ];
      process.stdout.write(`${banner.join('\n')}\n`);
      await stopOnSignals(server, () => {
        if (temp) rmSync(dataDir, { recursive: true, force: true });
      });
    }));
}

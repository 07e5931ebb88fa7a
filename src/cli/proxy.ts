import { resolve } from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { parseDuration } from '../core/duration.js';
import { parseHostPort, Sidecar, type EndpointAddress, type UpstreamSpec } from '../mesh/proxy/index.js';
import { isLoopbackHost, startAdminServer } from '../mesh/proxy/runtime/admin.js';
import { createLogger } from '../telemetry/index.js';
import { CliError } from './client.js';
import { action } from './command.js';

// `aegis proxy`: the sidecar of one service instance (tcp or http mode); it holds no token, only its SVID. Logs go to stderr; stdout gets one line per
// listener once the proxy serves, so scripts (and tests) can read the ports it bound.

const NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** `host:port`; unlike an instance address, a listener may ask for port 0 (any free port). */
function address(value: string, flag: string): EndpointAddress {
  try {
    return value.endsWith(':0') ? { ...parseHostPort(`${value.slice(0, -2)}:1`), port: 0 } : parseHostPort(value);
  } catch {
    throw new CliError(`${flag} ${JSON.stringify(value)}: use host:port (port 0 picks a free one)`, 2);
  }
}

/** `name=host:port` or `ns/name=host:port`. */
function upstream(value: string, namespace: string): UpstreamSpec {
  const m = /^(?:([^/=]+)\/)?([^/=]+)=(.+)$/.exec(value);
  if (!m || !NAME.test(m[2]!) || (m[1] !== undefined && !NAME.test(m[1]))) {
    throw new CliError(`--upstream ${JSON.stringify(value)}: use SERVICE=host:port or NAMESPACE/SERVICE=host:port`, 2);
  }
  return { service: m[2]!, namespace: m[1] ?? namespace, listen: address(m[3]!, `--upstream ${m[2]!}`) };
}

interface ProxyFlags {
  service?: string;
  namespace: string;
  listen: string;
  advertise?: string;
  app?: string;
  upstream: string[];
  joinToken?: string;
  jwtFile?: string;
  attestor?: string;
  mode: string;
  lb: string;
  ttl?: string;
  adminListen?: string;
  logLevel: string;
}

export function registerProxy(program: Command): void {
  program.command('proxy')
    .description('run the mesh sidecar of one service instance: mTLS inbound to the app, a local listener per upstream')
    .option('--service <name>', 'the service this proxy fronts (required)')
    .option('--namespace <name>', 'its namespace', 'default')
    .option('--listen <host:port>', 'the inbound mTLS listener', '0.0.0.0:21000')
    .option('--advertise <host>', 'the address other proxies dial (default: the --listen host, 127.0.0.1 for 0.0.0.0)')
    .option('--app <host:port>', 'the local app behind the proxy (required)')
    .option('--upstream <name=host:port>', 'a local listener for an upstream service (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--join-token <token>', 'attest with a join token')
    .option('--jwt-file <file>', 'attest with a JWT from a configured OIDC issuer')
    .option('--attestor <name>', 'the JWT attestor to use with --jwt-file')
    .option('--mode <mode>', 'tcp (a decision per connection) or http (HTTP/1.1 and HTTP/2, a decision per request, X-Forwarded-Client-Cert to the app)', 'tcp')
    .option('--lb <policy>', 'how upstream instances are chosen: least-request or round-robin', 'least-request')
    .option('--ttl <duration>', 'SVID lifetime to ask for (5m … 24h; default the server’s, 1h)')
    .option('--admin-listen <host:port>', 'the admin port, loopback only: GET /metrics (Prometheus), /status (JSON), /ready; POST /renew')
    .option('--log-level <level>', 'log level (logs go to stderr)', 'info')
    .action(action(async (o: ProxyFlags) => {
      if (o.mode !== 'tcp' && o.mode !== 'http') throw new CliError(`--mode ${JSON.stringify(o.mode)}: use tcp or http`, 2);
      if (o.lb !== 'least-request' && o.lb !== 'round-robin') throw new CliError(`--lb ${JSON.stringify(o.lb)}: use least-request or round-robin`, 2);
      if (!o.service || !NAME.test(o.service)) throw new CliError('--service NAME is required (a DNS label)', 2);
      if (!NAME.test(o.namespace)) throw new CliError(`--namespace ${JSON.stringify(o.namespace)} is not a valid name`, 2);
      if (!o.app) throw new CliError('--app host:port is required (the local app behind the proxy)', 2);
      if (!o.joinToken === !o.jwtFile) throw new CliError('give exactly one of --join-token or --jwt-file', 2);
      if (o.jwtFile && !o.attestor) throw new CliError('--jwt-file needs --attestor NAME', 2);
      const upstreams = o.upstream.map((u) => upstream(u, o.namespace));
      if (new Set(upstreams.map((u) => `${u.namespace}/${u.service}`)).size !== upstreams.length) throw new CliError('the same --upstream is given twice', 2);
      let ttlSeconds: number | undefined;
      try {
        ttlSeconds = o.ttl ? parseDuration(o.ttl, '--ttl') : undefined;
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      const adminAt = o.adminListen ? address(o.adminListen, '--admin-listen') : null;
      if (adminAt && !isLoopbackHost(adminAt.host)) throw new CliError('--admin-listen must be a loopback address (it can force renewals and shows internals)', 2);

      const logger = createLogger(o.logLevel, pino.destination(2));
      const addr = process.env.AEGIS_ADDR ?? 'https://127.0.0.1:8200';
      const sidecar = new Sidecar({
        address: addr, caFile: process.env.AEGIS_CACERT,
        attestation: o.joinToken ? { joinToken: o.joinToken, service: o.service, namespace: o.namespace } : { jwtFile: resolve(o.jwtFile!), attestor: o.attestor! },
        namespace: o.namespace, service: o.service, listen: address(o.listen, '--listen'), advertise: o.advertise,
        app: address(o.app, '--app'), mode: o.mode, lb: o.lb, upstreams, logger, ttlSeconds,
      });
      await sidecar.start();
      const admin = adminAt
        ? await startAdminServer({ listen: adminAt, metrics: sidecar.metrics, status: () => sidecar.status(), ready: () => sidecar.ready(), renew: () => sidecar.renew() })
        : null;
      const lines = [`Proxy ${o.namespace}/${o.service} serving as ${sidecar.spiffeId}`, `  inbound: ${sidecar.inboundPort}`];
      for (const u of upstreams) lines.push(`  upstream ${u.namespace}/${u.service}: ${sidecar.upstreamPort(u.namespace, u.service)}`);
      if (admin) lines.push(`  admin: ${admin.port}`);
      process.stdout.write(lines.join('\n') + '\n');
      await new Promise<void>((done) => {
        const stop = () => void Promise.all([sidecar.stop(), admin?.close()]).finally(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      process.exit(0);
    }));
}

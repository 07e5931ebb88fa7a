import { connect } from 'node:net';
import type { CheckTarget } from '../model.js';
import { critical, raceProbe, type ProbeResult } from './probe.js';

/** `host:port` or `[v6 address]:port`; null when it is neither. */
export function parseHostPort(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

/** Consul's TCP check: passing when a connection opens within the timeout, critical with the error otherwise. */
export function tcpProbe(target: CheckTarget, signal: AbortSignal): Promise<ProbeResult> {
  const raw = target.check.tcp ?? '';
  const label = `TCP connect ${raw}`;
  const hp = parseHostPort(raw);
  if (!hp) return Promise.resolve(critical(`${label}: not a host:port address`));
  return raceProbe(target, signal, label, (settle) => {
    const sock = connect({ host: hp.host, port: hp.port });
    sock.once('connect', () => settle({ status: 'passing', output: `${label}: Success` }));
    sock.on('error', (err) => settle(critical(`${label}: ${err.message}`)));
    return () => sock.destroy();
  });
}

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDuration } from '../core/duration.js';

/** A server's settings, from a JSON file (`aegis server --config FILE`) or built by `aegis dev`. */
export interface ServerConfig {
  listener: {
    address: string;
    /** Plain HTTP: refused unless the address is a loopback one. */
    tlsDisable: boolean;
    tlsCertFile: string | null;
    tlsKeyFile: string | null;
    /** Extra names for the self-made server certificate. */
    tlsSan: string[];
  };
  dataDir: string;
  storage: { path: string; synchronous: 'full' | 'normal' };
  /** Auto-unseal key file, if any. */
  sealKeyFile: string | null;
  maxRequestBytes: number;
  requestTimeoutMs: number;
  rateLimit: { perSecond: number; burst: number };
  defaultTtl: number;
  maxTtl: number;
  logLevel: string;
  /** The URL clients reach this server at (JWT-SVID issuer, OIDC discovery); default: the listener's address. */
  apiAddr: string | null;
  /** Worker threads that verify CSRs and sign SVIDs (default: one per CPU). */
  issueWorkers: number;
  /** Where the catalog's DNS interface listens (UDP); null = off. */
  dnsAddress: string | null;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const TOP = ['listener', 'storage', 'data_dir', 'seal', 'max_request_bytes', 'request_timeout', 'rate_limit', 'default_lease_ttl', 'max_lease_ttl', 'log_level', 'api_addr', 'identity_workers', 'dns_addr'];

export function defaultConfig(dataDir: string): ServerConfig {
  return {
    listener: { address: '127.0.0.1:8200', tlsDisable: false, tlsCertFile: null, tlsKeyFile: null, tlsSan: [] },
    dataDir,
    storage: { path: resolve(dataDir, 'aegis.db'), synchronous: 'full' },
    sealKeyFile: null,
    maxRequestBytes: 1024 * 1024,
    requestTimeoutMs: 30_000,
    rateLimit: { perSecond: 1000, burst: 2000 },
    defaultTtl: 768 * 3600,
    maxTtl: 768 * 3600,
    logLevel: 'info',
    apiAddr: null,
    issueWorkers: Math.min(8, availableParallelism()),
    dnsAddress: '127.0.0.1:8600',
  };
}

export function loadConfigFile(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(json, dirname(resolve(path)));
}

/** Validates a config document; relative paths are taken from `baseDir` (the config file's folder). */
export function parseConfig(json: unknown, baseDir: string): ServerConfig {
  const doc = obj(json, 'config');
  unknownKeys(doc, TOP, '');
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const dataDir = abs(str(doc.data_dir ?? './data', 'data_dir'));
  const cfg = defaultConfig(dataDir);

  if (doc.listener !== undefined) {
    const l = obj(doc.listener, 'listener');
    unknownKeys(l, ['address', 'tls_disable', 'tls_cert_file', 'tls_key_file', 'tls_san'], 'listener.');
    if (l.address !== undefined) cfg.listener.address = str(l.address, 'listener.address');
    if (l.tls_disable !== undefined) cfg.listener.tlsDisable = bool(l.tls_disable, 'listener.tls_disable');
    if (l.tls_cert_file !== undefined) cfg.listener.tlsCertFile = abs(str(l.tls_cert_file, 'listener.tls_cert_file'));
    if (l.tls_key_file !== undefined) cfg.listener.tlsKeyFile = abs(str(l.tls_key_file, 'listener.tls_key_file'));
    if (l.tls_san !== undefined) {
      if (!Array.isArray(l.tls_san) || !l.tls_san.every((s) => typeof s === 'string')) throw new ConfigError('listener.tls_san must be a list of names');
      cfg.listener.tlsSan = l.tls_san as string[];
    }
    if ((cfg.listener.tlsCertFile === null) !== (cfg.listener.tlsKeyFile === null)) {
      throw new ConfigError('listener: give both tls_cert_file and tls_key_file, or neither (Aegis then makes its own)');
    }
  }
  parseAddress(cfg.listener.address);
  if (cfg.listener.tlsDisable && !isLoopback(parseAddress(cfg.listener.address).host)) {
    throw new ConfigError(`listener.tls_disable is only allowed on a loopback address, not ${cfg.listener.address}: plain HTTP would expose tokens`);
  }

  if (doc.storage !== undefined) {
    const s = obj(doc.storage, 'storage');
    unknownKeys(s, ['sqlite'], 'storage.');
    const sq = obj(s.sqlite ?? {}, 'storage.sqlite');
    unknownKeys(sq, ['path', 'synchronous'], 'storage.sqlite.');
    if (sq.path !== undefined) cfg.storage.path = abs(str(sq.path, 'storage.sqlite.path'));
    if (sq.synchronous !== undefined) {
      if (sq.synchronous !== 'full' && sq.synchronous !== 'normal') throw new ConfigError('storage.sqlite.synchronous must be "full" or "normal"');
      cfg.storage.synchronous = sq.synchronous;
    }
  }
  if (doc.seal !== undefined) {
    const s = obj(doc.seal, 'seal');
    unknownKeys(s, ['file'], 'seal.');
    const f = obj(s.file, 'seal.file');
    unknownKeys(f, ['path'], 'seal.file.');
    cfg.sealKeyFile = abs(str(f.path, 'seal.file.path'));
  }
  if (doc.max_request_bytes !== undefined) cfg.maxRequestBytes = int(doc.max_request_bytes, 'max_request_bytes', 1024, 64 * 1024 * 1024);
  if (doc.request_timeout !== undefined) cfg.requestTimeoutMs = duration(doc.request_timeout, 'request_timeout') * 1000;
  if (doc.rate_limit !== undefined) {
    const r = obj(doc.rate_limit, 'rate_limit');
    unknownKeys(r, ['requests_per_second', 'burst'], 'rate_limit.');
    cfg.rateLimit.perSecond = int(r.requests_per_second ?? cfg.rateLimit.perSecond, 'rate_limit.requests_per_second', 0, 10_000_000);
    cfg.rateLimit.burst = int(r.burst ?? Math.max(1, cfg.rateLimit.perSecond * 2), 'rate_limit.burst', 1, 100_000_000);
  }
  if (doc.default_lease_ttl !== undefined) cfg.defaultTtl = duration(doc.default_lease_ttl, 'default_lease_ttl');
  if (doc.max_lease_ttl !== undefined) cfg.maxTtl = duration(doc.max_lease_ttl, 'max_lease_ttl');
  if (cfg.defaultTtl > cfg.maxTtl) throw new ConfigError('default_lease_ttl must not exceed max_lease_ttl');
  if (doc.log_level !== undefined) {
    const lv = str(doc.log_level, 'log_level');
    if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(lv)) throw new ConfigError('log_level must be one of error, warn, info, debug, trace, silent');
    cfg.logLevel = lv;
  }
  if (doc.dns_addr !== undefined) {
    // "" or null turns DNS off.
    cfg.dnsAddress = doc.dns_addr === null || doc.dns_addr === '' ? null : str(doc.dns_addr, 'dns_addr');
    if (cfg.dnsAddress) parseAddress(cfg.dnsAddress);
  }
  if (doc.identity_workers !== undefined) cfg.issueWorkers = int(doc.identity_workers, 'identity_workers', 0, 64);
  if (doc.api_addr !== undefined) {
    const a = str(doc.api_addr, 'api_addr');
    if (!/^https?:\/\/[^/?#\s]+$/.test(a)) throw new ConfigError(`api_addr "${a}": give the scheme, host and port only, e.g. https://aegis.example.com:8200`);
    cfg.apiAddr = a;
  }
  return cfg;
}

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`listen address "${address}" must look like 127.0.0.1:8200`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function obj(v: unknown, name: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${name} must be an object`);
  return v as Record<string, unknown>;
}
function str(v: unknown, name: string): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${name} must be a non-empty string`);
  return v;
}
function bool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`${name} must be true or false`);
  return v;
}
function int(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ConfigError(`${name} must be a whole number from ${min} to ${max}`);
  return v;
}
function duration(v: unknown, name: string): number {
  try {
    return parseDuration(v, name);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}
function unknownKeys(o: Record<string, unknown>, known: string[], prefix: string): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new ConfigError(`unknown config key "${prefix}${k}"; known: ${known.map((x) => prefix + x).join(', ')}`);
}

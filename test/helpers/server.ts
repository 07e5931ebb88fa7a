import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { defaultConfig, type ServerConfig } from '../../src/server/config.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { createLogger } from '../../src/telemetry/index.js';
import { tempDir } from './temp.js';
import { onCleanup } from './cleanup.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/aegis.js');

export interface InProcessServer extends RunningServer {
  rootToken: string;
  keys: Buffer[];
  dataDir: string;
  api: Api;
}

/**
 * A real server in this process on 127.0.0.1:<free port>, plain HTTP unless `tls`, initialized (one share unless
 * given) and unsealed; closed when the test file ends.
 */
export async function startTestServer(opts: { tls?: boolean; shares?: number; threshold?: number; configure?: (c: ServerConfig) => void; initialize?: boolean } = {}): Promise<InProcessServer> {
  const dataDir = tempDir('server');
  const cfg = defaultConfig(dataDir);
  cfg.listener.address = '127.0.0.1:0';
  cfg.listener.tlsDisable = !opts.tls;
  cfg.storage.synchronous = 'normal';
  cfg.rateLimit = { perSecond: 0, burst: 1 };
  cfg.dnsAddress = '127.0.0.1:0';
  opts.configure?.(cfg);
  const server = await startServer(cfg, createLogger('silent'));
  onCleanup(() => server.close());
  let rootToken = '';
  let keys: Buffer[] = [];
  if (opts.initialize !== false) {
    const r = await server.core.initialize(opts.shares ?? 1, opts.threshold ?? 1);
    rootToken = r.rootToken;
    keys = r.keys;
    for (const k of keys.slice(0, opts.threshold ?? 1)) if (server.core.barrier.sealed) await server.core.submitUnsealKey(k.toString('hex'));
  }
  return { ...server, rootToken, keys, dataDir, api: api(server.address, rootToken) };
}

export interface ApiResult {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

export type Api = (method: string, path: string, opts?: { token?: string | null; body?: unknown; headers?: Record<string, string>; raw?: string | Buffer }) => Promise<ApiResult>;

/** Plain-HTTP API calls with fetch; `token` defaults to the given one (null sends none). */
export function api(address: string, defaultToken: string | null): Api {
  return async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    const token = o.token === undefined ? defaultToken : o.token;
    if (token) headers['x-vault-token'] = token;
    let body: string | Buffer | undefined = o.raw;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${address}/v1/${path}`, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
    return { status: res.status, body: parsed, text, headers: res.headers };
  };
}

export interface DevProcess {
  address: string;
  rootToken: string;
  dataDir: string;
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  api: Api;
  stop(): Promise<number | null>;
}

/** `aegis dev` as a real child process on a free loopback port; stopped (SIGTERM) when the test file ends. */
export async function startDevProcess(opts: { rootToken?: string; dataDir?: string; extraArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<DevProcess> {
  const dataDir = opts.dataDir ?? tempDir('dev');
  const rootToken = opts.rootToken ?? 'root-test-token';
  const proc = spawn(process.execPath, [BIN, 'dev', '--listen', '127.0.0.1:0', '--root-token', rootToken, '--data-dir', dataDir, '--log-level', 'warn', '--dns-listen', '127.0.0.1:0', ...(opts.extraArgs ?? [])], {
    cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => { out += d; });
  proc.stderr!.on('data', (d) => { err += d; });
  const address = await new Promise<string>((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`aegis dev did not start in 30s:\n${out}\n${err}`)), 30_000);
    const check = () => {
      const m = /Address:\s+(http:\/\/\S+)/.exec(out);
      // The banner's last line is the audit verify command.
      if (m && /audit verify \S+\n/.test(out)) {
        clearTimeout(timer);
        resolveAddr(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`aegis dev exited with ${code}:\n${out}\n${err}`)); });
  });
  let exited: Promise<number | null> | null = null;
  const stop = () => {
    exited ??= new Promise((res) => {
      if (proc.exitCode !== null) return res(proc.exitCode);
      proc.once('exit', (code) => res(code));
      proc.kill('SIGTERM');
    });
    return exited;
  };
  onCleanup(() => stop());
  return { address, rootToken, dataDir, proc, stdout: () => out, stderr: () => err, api: api(address, rootToken), stop };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A CLI runner for one environment that fails the test unless the command exits 0; it returns standard output. */
export function cliOk(env: NodeJS.ProcessEnv): (...args: string[]) => Promise<string> {
  return async (...args) => {
    const r = await runCli(args, env);
    assert.equal(r.code, 0, `aegis ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

/** Runs the real `aegis` CLI as a child process. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return new Promise((resolveRun) => {
    const proc = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, AEGIS_TOKEN: undefined, AEGIS_ADDR: undefined, AEGIS_CACERT: undefined, HOME: tempHome(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('close', (code) => resolveRun({ code, stdout, stderr }));
    proc.stdin.end(input ?? '');
  });
}

let home: string | null = null;
function tempHome(): string {
  home ??= tempDir('home');
  return home;
}

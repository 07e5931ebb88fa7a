import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');

export interface ServerProcess {
  address: URL;
  ca: string | undefined;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `aegis server --config` as its own process (so load generation does not share its event loop). */
export async function startServerProcess(dir: string, config: Record<string, unknown>): Promise<ServerProcess> {
  const cfgPath = join(dir, 'aegis.json');
  writeFileSync(cfgPath, JSON.stringify(config));
  // BENCH_SERVER_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles the server side of a run.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // BENCH_SERVER_WRAPPER (e.g. "strace -f -c -o /tmp/s.out") runs the server under a tool.
  const wrapper = (process.env.BENCH_SERVER_WRAPPER ?? '').split(' ').filter(Boolean);
  const argv = [process.execPath, ...nodeArgs, join(ROOT, 'bin/aegis.js'), 'server', '--config', cfgPath];
  const full = [...wrapper, ...argv];
  const proc = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  // BENCH_SERVER_LOG=FILE keeps everything the server printed (e.g. with --trace-gc).
  const log = process.env.BENCH_SERVER_LOG ? createWriteStream(process.env.BENCH_SERVER_LOG) : null;
  proc.stdout!.on('data', (d) => { out += d; log?.write(d); });
  proc.stderr!.on('data', (d) => { log?.write(d); });
  proc.stderr!.on('data', (d) => { out += d; });
  const address = await new Promise<URL>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${out}`)), 30_000);
    proc.stdout!.on('data', () => {
      const m = /listening on (\S+)/.exec(out);
      // The banner ends with the seal state; by then the CA line (if any) is printed too.
      if (m && /initialized: /.test(out)) {
        clearTimeout(timer);
        ok(new URL(m[1]!));
      }
    });
    proc.on('exit', (c) => { clearTimeout(timer); fail(new Error(`server exited ${c}:\n${out}`)); });
  });
  proc.on('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`aegis server exited unexpectedly (${code ?? signal}):\n${out.slice(-4000)}\n`);
  });
  let stopping = false;
  const caMatch = /AEGIS_CACERT=(\S+)/.exec(out);
  return {
    address, ca: caMatch ? readFileSync(caMatch[1]!, 'utf8') : undefined, proc,
    stop: () => new Promise((ok) => {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null) return ok();
      proc.once('exit', () => ok());
      proc.kill('SIGTERM');
    }),
  };
}

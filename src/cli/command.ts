import { Command, Option } from 'commander';
import { ApiClient, CliError } from './client.js';
import type { Format } from './output.js';

export interface CommonOptions {
  format: Format;
}

/** Adds `--format table|json` to a command. */
export function withFormat(cmd: Command): Command {
  return cmd.addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'));
}

/** Runs a command body; a CliError becomes one line on stderr and its exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void | number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (err) {
      const msg = err instanceof CliError ? err.message : err instanceof Error ? err.message : String(err);
      process.stderr.write(`Error: ${msg.split('\n')[0]}\n`);
      process.exitCode = err instanceof CliError ? err.exitCode : 1;
    }
  };
}

export function client(): ApiClient {
  return new ApiClient();
}

/** `k=v` pairs (v may be `@file` to read a file); throws on anything else. */
export function parsePairs(args: string[], what = 'argument'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i <= 0) throw new CliError(`${what} "${a}" must look like key=value`, 2);
    out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

/** The keys under a path (Vault's LIST); `empty` is the error when there are none. */
export async function listKeys(path: string, empty: string): Promise<string[]> {
  const res = await client().call('GET', path, { query: { list: 'true' } });
  if (res.status === 404) throw new CliError(empty);
  if (res.status >= 400) throw new CliError(`${path}: ${res.status} ${((res.body?.errors as string[]) ?? []).join('; ')}`);
  return (res.body!.data as { keys: string[] }).keys;
}

export function wholeNumber(value: string, name: string): number {
  if (!/^\d+$/.test(value)) throw new CliError(`${name} must be a whole number, got "${value}"`, 2);
  return Number(value);
}

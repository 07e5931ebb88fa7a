// Shared by the audit tests (not a test file): reading an audit file and driving a core's audit devices.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TestCore } from '../helpers/core.js';

export interface Entry {
  seq: number;
  prev_hash: string;
  hash: string;
  time: string;
  type: 'request' | 'response';
  auth: null | { client_token: string; accessor: string; display_name: string; policies: string[]; metadata: Record<string, unknown> };
  request: { id: string; operation: string; path: string; mount_type: string | null; client_token: string | null; remote_address: string; data: any };
  response?: { status: number | null; data: any; auth: null | { client_token: string; accessor: string; policies: string[] } };
  error?: string;
}

/** The lines of a log file, without the final newline's empty piece. */
export function fileLines(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function entries(path: string): Entry[] {
  return fileLines(path).map((l) => JSON.parse(l) as Entry);
}

export function joinLines(lines: readonly string[]): string {
  return lines.map((l) => `${l}\n`).join('');
}

/** Enables a file audit device through the API (root token) and checks it took. */
export async function enableFileDevice(t: TestCore, name: string, path: string): Promise<void> {
  const r = await t.call('update', `sys/audit/${name}`, { type: 'file', options: { file_path: path } });
  assert.equal(r.status, 204, `enabling audit device ${name}: ${r.error?.message}`);
}

/** A token that carries only the given Cedar policy (and `default`). */
export async function tokenWithPolicy(t: TestCore, name: string, cedar: string): Promise<{ token: string; accessor: string }> {
  const p = await t.call('update', `sys/policies/cedar/${name}`, { policy: cedar });
  assert.equal(p.status, 204, `writing policy ${name}: ${p.error?.message}`);
  const r = await t.call('update', 'auth/token/create', { policies: [name] });
  assert.equal(r.status, 200, `creating a token: ${r.error?.message}`);
  return { token: r.response!.auth!.client_token, accessor: r.response!.auth!.accessor };
}

/** The forms a secret could leak in: as written, and as it would appear inside a JSON string. */
export function leakForms(value: string): string[] {
  return [...new Set([value, JSON.stringify(value).slice(1, -1), Buffer.from(value).toString('base64'), Buffer.from(value).toString('hex')])];
}

import assert from 'node:assert/strict';
import type { PipelineResult } from '../../src/core/pipeline.js';

/** The `data` of a successful pipeline call (fails the test on an error). */
export function ok(r: PipelineResult, what = 'call'): any {
  assert.ok(r.status === 200 || r.status === 204, `${what}: expected success, got ${r.status} ${r.error?.message ?? ''}`);
  return r.response?.data ?? null;
}

/** Asserts an error status and a message matching `message`; returns the message. */
export function fails(r: PipelineResult, status: number, message?: RegExp): string {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${r.error?.message ?? JSON.stringify(r.response?.data ?? null)}`);
  assert.ok(r.error, 'expected an error');
  if (message) assert.match(r.error.message, message);
  return r.error.message;
}

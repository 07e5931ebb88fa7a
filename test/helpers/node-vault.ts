import assert from 'node:assert/strict';

export type VaultError = Error & { response: { statusCode: number; body: any } };

/** Runs a node-vault call that must fail; returns its error after checking it is node-vault's API error with `status`. */
export async function refused(call: Promise<unknown>, status: number): Promise<VaultError> {
  let caught: unknown = null;
  try {
    await call;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof Error, `expected the call to fail with ${status}`);
  const err = caught as VaultError;
  assert.ok(err.response, `expected a node-vault ApiResponseError, got ${err.message}`);
  assert.equal(err.response.statusCode, status, `status (message: ${err.message})`);
  return err;
}

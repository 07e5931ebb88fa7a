import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { makeCore } from '../helpers/core.js';

const nest = (depth: number, leaf: unknown = 'x'): unknown => (depth === 0 ? leaf : { a: nest(depth - 1, leaf) });
const nestArray = (depth: number): unknown => (depth === 0 ? 'x' : [nestArray(depth - 1)]);

describe('request data limits', () => {
  it('refuses data nested deeper than 32 levels with 400, before anything runs', async () => {
    const t = await makeCore();
    const deep = await t.call('update', 'secret/data/deep', { data: nest(40) as Record<string, unknown> });
    assert.equal(deep.status, 400);
    assert.match(deep.error!.message, /nested deeper than 32 levels/);
    const arrays = await t.call('update', 'secret/data/deep', { data: { list: nestArray(40) } });
    assert.equal(arrays.status, 400);
    assert.equal((await t.call('read', 'secret/data/deep')).status, 404, 'nothing was stored');
  });

  it('accepts nesting up to the limit and flat data', async () => {
    const t = await makeCore();
    assert.equal((await t.call('update', 'secret/data/ok', { data: nest(30) as Record<string, unknown> })).status, 200);
    assert.equal((await t.call('update', 'secret/data/flat', { data: { a: '1', b: 2, c: true, d: null } })).status, 200);
  });
});

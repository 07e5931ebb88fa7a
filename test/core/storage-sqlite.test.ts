import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SqliteStorage } from '../../src/core/storage/index.js';
import { storageConformance } from './storage-conformance.js';
import { tempDir } from '../helpers/temp.js';

const dir = tempDir('sqlite');
storageConformance('sqlite', {
  open: async () => new SqliteStorage({ path: join(dir, 'conformance.db'), synchronous: 'normal' }),
  reopen: async (prev) => {
    await prev.close();
    return new SqliteStorage({ path: join(dir, 'conformance.db'), synchronous: 'normal' });
  },
});

describe('sqlite driver', () => {
  it('compacts the change feed and reports a truncated read', async () => {
    const s = new SqliteStorage({ path: join(dir, 'compact.db'), retainChanges: 100, synchronous: 'normal' });
    for (let i = 0; i < 1500; i++) await s.put(`k/${i % 10}`, Buffer.from('x'));
    const page = await s.changes(0, 10);
    assert.equal(page.truncated, true);
    const recent = await s.changes((await s.currentIndex()) - 5);
    assert.equal(recent.truncated, false);
    assert.equal(recent.changes.length, 5);
    await s.close();
  });
});

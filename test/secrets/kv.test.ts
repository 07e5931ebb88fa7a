import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SecureStore } from '../../src/core/barrier/index.js';
import type { PipelineResult } from '../../src/core/pipeline.js';
import { makeCore } from '../helpers/core.js';
import { startTestServer } from '../helpers/server.js';

// One real core (SQLite in a temp dir) for the whole file: every test uses its own key names, and tests that
// change mount-wide settings (secret/config) use a mount of their own.
const t = await makeCore();
// And a real HTTP server in this process, for the checks where the HTTP shape matters.
const srv = await startTestServer();

/** The `data` of a successful call (fails the test on an error). */
function ok(r: PipelineResult, what = 'call'): any {
  assert.ok(r.status === 200 || r.status === 204, `${what}: expected success, got ${r.status} ${r.error?.message ?? ''}`);
  return r.response?.data ?? null;
}

/** Asserts an error status and a message matching `message`; returns the message. */
function fails(r: PipelineResult, status: number, message?: RegExp): string {
  assert.equal(r.status, status, `expected ${status}, got ${r.status} ${JSON.stringify(r.response?.data ?? null)}`);
  assert.ok(r.error, 'expected an error');
  if (message) assert.match(r.error.message, message);
  return r.error.message;
}

const put = (path: string, data: Record<string, unknown>, options?: Record<string, unknown>) =>
  t.call('update', `secret/data/${path}`, options ? { data, options } : { data });
const get = (path: string, version?: number) => t.call('read', `secret/data/${path}`, version === undefined ? {} : { version });
const meta = async (path: string): Promise<any> => ok(await t.call('read', `secret/metadata/${path}`), `metadata of ${path}`);

async function mount(path: string): Promise<void> {
  ok(await t.call('update', `sys/mounts/${path}`, { type: 'kv', options: { version: '2' } }), `mount ${path}`);
}

/** The mount's private storage (to check that data is really gone, not just hidden). */
function mountStore(path: string): SecureStore {
  const m = t.core.router.get(path);
  assert.ok(m, `${path} is mounted`);
  return m.store;
}

function versionKeys(mountPath: string, key: string): Promise<string[]> {
  return mountStore(mountPath).list(`versions/${createHash('sha256').update(key).digest('hex')}/`);
}

describe('KV v2 write and read', () => {
  it('a first write creates version 1 and a read returns the data with the version metadata', async () => {
    const w = ok(await put('basic/one', { user: 'alice', n: 1, nested: { a: true } }));
    assert.equal(w.version, 1);
    assert.equal(w.destroyed, false);
    assert.equal(w.deletion_time, '');
    assert.equal(w.custom_metadata, null);
    assert.ok(!Number.isNaN(Date.parse(w.created_time)), 'created_time is a timestamp');

    const r = ok(await get('basic/one'));
    assert.deepEqual(r.data, { user: 'alice', n: 1, nested: { a: true } });
    assert.deepEqual(r.metadata, w);
  });

  it('each write adds the next version; the latest is read by default and ?version=N reads an older one', async () => {
    for (let i = 1; i <= 3; i++) assert.equal(ok(await put('basic/versions', { v: i })).version, i);
    assert.deepEqual(ok(await get('basic/versions')).data, { v: 3 });
    assert.equal(ok(await get('basic/versions')).metadata.version, 3);
    assert.deepEqual(ok(await get('basic/versions', 0)).data, { v: 3 }, 'version 0 means the latest');
    for (let i = 1; i <= 3; i++) {
      const r = ok(await get('basic/versions', i));
      assert.deepEqual(r.data, { v: i });
      assert.equal(r.metadata.version, i);
    }
    const m = await meta('basic/versions');
    assert.equal(m.current_version, 3);
    assert.deepEqual(Object.keys(m.versions).sort(), ['1', '2', '3']);
  });

  it('reading a missing secret or a version that never existed is a 404', async () => {
    fails(await get('basic/never-written'), 404, /no secret at basic\/never-written/);
    ok(await put('basic/short', { a: 1 }));
    fails(await get('basic/short', 7), 404, /no version 7/);
  });

  it('a stored value round-trips every JSON type unchanged', async () => {
    const value = { s: 'x', n: -1.5, b: false, nul: null, arr: [1, 'two', { three: 3 }], obj: { deep: { deeper: ['x'] } }, empty: {} };
    ok(await put('basic/types', value));
    assert.deepEqual(ok(await get('basic/types')).data, value);
  });
});

describe('check-and-set', () => {
  it('cas 0 writes only when the secret does not exist yet', async () => {
    assert.equal(ok(await put('cas/new', { a: 1 }, { cas: 0 })).version, 1);
    fails(await put('cas/new', { a: 2 }, { cas: 0 }), 400, /check-and-set parameter did not match the current version: current is 1, options.cas was 0/);
    assert.deepEqual(ok(await get('cas/new')).data, { a: 1 });
  });

  it('a write with the current version as cas succeeds and makes the next version', async () => {
    ok(await put('cas/match', { a: 1 }));
    ok(await put('cas/match', { a: 2 }));
    assert.equal(ok(await put('cas/match', { a: 3 }, { cas: 2 })).version, 3);
    assert.equal(ok(await put('cas/match', { a: 4 }, { cas: '3' })).version, 4, 'a numeric string is accepted');
  });

  it('a write with a stale cas is refused with a clear message and stores nothing', async () => {
    ok(await put('cas/stale', { a: 1 }));
    ok(await put('cas/stale', { a: 2 }));
    const before = await meta('cas/stale');
    fails(await put('cas/stale', { a: 'lost' }, { cas: 1 }), 400, /did not match the current version: current is 2, options.cas was 1/);
    const afterMeta = await meta('cas/stale');
    assert.equal(afterMeta.current_version, 2);
    assert.deepEqual(afterMeta, before);
    assert.deepEqual(ok(await get('cas/stale')).data, { a: 2 });
  });

  it('a cas that is not a whole number ≥ 0 is refused and stores nothing', async () => {
    ok(await put('cas/badtype', { a: 1 }));
    for (const cas of ['one', -1, 1.5, true, {}]) {
      fails(await put('cas/badtype', { a: 'x' }, { cas }), 400, /options\.cas must be a whole number/);
    }
    fails(await t.call('update', 'secret/data/cas/badtype', { data: { a: 'x' }, options: 'cas=1' }), 400, /field "options": expected an object/);
    assert.equal((await meta('cas/badtype')).current_version, 1);
  });

  it('cas_required on a key refuses writes without options.cas, and a PATCH too', async () => {
    ok(await t.call('update', 'secret/metadata/cas/required', { cas_required: true }));
    const m = await meta('cas/required');
    assert.equal(m.cas_required, true);
    assert.equal(m.current_version, 0, 'metadata can exist before any data');
    fails(await put('cas/required', { a: 1 }), 400, /check-and-set parameter required/);
    assert.equal((await meta('cas/required')).current_version, 0);
    assert.equal(ok(await put('cas/required', { a: 1 }, { cas: 0 })).version, 1);
    fails(await put('cas/required', { a: 2 }), 400, /check-and-set parameter required/);
    fails(await t.call('patch', 'secret/data/cas/required', { data: { b: 1 } }), 400, /check-and-set parameter required/);
    assert.equal(ok(await t.call('patch', 'secret/data/cas/required', { data: { b: 1 }, options: { cas: 1 } })).version, 2);
    assert.deepEqual(ok(await get('cas/required')).data, { a: 1, b: 1 });
  });

  it('cas_required in the mount config forces cas on every key of that mount only', async () => {
    await mount('cascfg');
    ok(await t.call('update', 'cascfg/config', { cas_required: true }));
    assert.equal(ok(await t.call('read', 'cascfg/config')).cas_required, true);
    fails(await t.call('update', 'cascfg/data/k', { data: { a: 1 } }), 400, /check-and-set parameter required/);
    fails(await t.call('read', 'cascfg/data/k'), 404);
    assert.equal(ok(await t.call('update', 'cascfg/data/k', { data: { a: 1 }, options: { cas: 0 } })).version, 1);
    // The key's own cas_required=false does not switch the mount's requirement off.
    ok(await t.call('update', 'cascfg/metadata/k', { cas_required: false }));
    fails(await t.call('update', 'cascfg/data/k', { data: { a: 2 } }), 400, /check-and-set parameter required/);
    // Other mounts are not affected.
    ok(await put('cas/other-mount', { a: 1 }));
  });
});

describe('max_versions', () => {
  it('max_versions on a key keeps only the newest versions: older data is gone and oldest_version moves', async () => {
    ok(await t.call('update', 'secret/metadata/maxv/key', { max_versions: 3 }));
    for (let i = 1; i <= 5; i++) ok(await put('maxv/key', { v: i }));
    const m = await meta('maxv/key');
    assert.equal(m.max_versions, 3);
    assert.equal(m.current_version, 5);
    assert.equal(m.oldest_version, 3);
    assert.deepEqual(Object.keys(m.versions).sort(), ['3', '4', '5']);
    fails(await get('maxv/key', 1), 404, /no version 1/);
    fails(await get('maxv/key', 2), 404, /no version 2/);
    assert.deepEqual(ok(await get('maxv/key', 3)).data, { v: 3 });
    assert.deepEqual((await versionKeys('secret/', 'maxv/key')).sort(), ['3', '4', '5'], 'pruned versions are removed from storage');
  });

  it('lowering max_versions prunes the existing versions at once', async () => {
    for (let i = 1; i <= 4; i++) ok(await put('maxv/lower', { v: i }));
    ok(await t.call('patch', 'secret/metadata/maxv/lower', { max_versions: 2 }));
    const m = await meta('maxv/lower');
    assert.equal(m.oldest_version, 3);
    assert.deepEqual(Object.keys(m.versions).sort(), ['3', '4']);
    assert.deepEqual((await versionKeys('secret/', 'maxv/lower')).sort(), ['3', '4']);
  });

  it('without any setting a key keeps 10 versions; the mount config max_versions applies to keys that set none', async () => {
    for (let i = 1; i <= 12; i++) ok(await put('maxv/default', { v: i }));
    const d = await meta('maxv/default');
    assert.equal(d.oldest_version, 3);
    assert.equal(Object.keys(d.versions).length, 10);

    await mount('maxcfg');
    ok(await t.call('update', 'maxcfg/config', { max_versions: 2 }));
    assert.equal(ok(await t.call('read', 'maxcfg/config')).max_versions, 2);
    for (let i = 1; i <= 4; i++) ok(await t.call('update', 'maxcfg/data/k', { data: { v: i } }));
    const m = ok(await t.call('read', 'maxcfg/metadata/k'));
    assert.equal(m.oldest_version, 3);
    assert.deepEqual(Object.keys(m.versions).sort(), ['3', '4']);
  });
});

describe('delete_version_after', () => {
  it('versions read as deleted once delete_version_after has passed, and the shorter of key and mount setting wins', async () => {
    // Mount A: config 1h, key 1s → 1s. Mount B: config 1s, key 1h → 1s. Mount A, key without a setting → 1h.
    await mount('dva');
    await mount('dvb');
    ok(await t.call('update', 'dva/config', { delete_version_after: '1h' }));
    ok(await t.call('update', 'dvb/config', { delete_version_after: '1s' }));
    assert.equal(ok(await t.call('read', 'dvb/config')).delete_version_after, '1s');
    ok(await t.call('update', 'dva/metadata/short', { delete_version_after: '1s' }));
    ok(await t.call('update', 'dvb/metadata/long', { delete_version_after: '1h' }));
    assert.equal(ok(await t.call('read', 'dva/metadata/short')).delete_version_after, '1s');

    const lifetimes: Record<string, number> = {};
    for (const path of ['dva/data/short', 'dvb/data/long', 'dva/data/plain']) {
      const w = ok(await t.call('update', path, { data: { p: path } }));
      lifetimes[path] = Date.parse(w.deletion_time) - Date.parse(w.created_time);
      // Not yet deleted: readable, with its future deletion_time shown.
      assert.deepEqual(ok(await t.call('read', path)).data, { p: path });
    }
    assert.deepEqual(lifetimes, { 'dva/data/short': 1000, 'dvb/data/long': 1000, 'dva/data/plain': 3_600_000 });

    await sleep(1100); // the one place time must pass

    for (const path of ['dva/data/short', 'dvb/data/long']) {
      const r = await t.call('read', path);
      assert.equal(r.status, 404, `${path} reads as deleted`);
      assert.equal(r.response?.data?.data, null);
      assert.equal((r.response?.data?.metadata as any).version, 1);
      assert.ok(Date.parse((r.response?.data?.metadata as any).deletion_time) <= Date.now());
    }
    assert.deepEqual(ok(await t.call('read', 'dva/data/plain')).data, { p: 'dva/data/plain' });
    // An expired version can be undeleted like any soft-deleted one.
    ok(await t.call('update', 'dva/undelete/short', { versions: [1] }));
    assert.deepEqual(ok(await t.call('read', 'dva/data/short')).data, { p: 'dva/data/short' });
  });
});

describe('soft delete, undelete and destroy', () => {
  it('DELETE on data soft-deletes the latest version only; reading it is a 404 with data null and its metadata', async () => {
    ok(await put('del/latest', { v: 1 }));
    ok(await put('del/latest', { v: 2 }));
    const r = await t.call('delete', 'secret/data/del/latest');
    assert.equal(r.status, 204);
    const read = await get('del/latest');
    assert.equal(read.status, 404);
    assert.equal(read.error, null, 'a deleted version is answered with its metadata, not an error');
    assert.equal(read.response?.data?.data, null);
    const md = read.response?.data?.metadata as any;
    assert.equal(md.version, 2);
    assert.equal(md.destroyed, false);
    assert.ok(md.deletion_time !== '' && !Number.isNaN(Date.parse(md.deletion_time)), 'deletion_time is set');
    assert.deepEqual(ok(await get('del/latest', 1)).data, { v: 1 }, 'older versions stay readable');
    const m = await meta('del/latest');
    assert.equal(m.current_version, 2);
    assert.notEqual(m.versions['2'].deletion_time, '');
    assert.equal(m.versions['1'].deletion_time, '');
  });

  it('delete/ soft-deletes the chosen versions and leaves the others readable', async () => {
    for (let i = 1; i <= 3; i++) ok(await put('del/chosen', { v: i }));
    assert.equal((await t.call('update', 'secret/delete/del/chosen', { versions: [1, 3, 99] })).status, 204);
    for (const v of [1, 3]) {
      const r = await get('del/chosen', v);
      assert.equal(r.status, 404);
      assert.equal(r.response?.data?.data, null);
      assert.notEqual((r.response?.data?.metadata as any).deletion_time, '');
    }
    assert.deepEqual(ok(await get('del/chosen', 2)).data, { v: 2 });
    assert.equal((await get('del/chosen')).status, 404, 'the latest (3) is deleted');
  });

  it('undelete restores soft-deleted versions with their data', async () => {
    for (let i = 1; i <= 2; i++) ok(await put('del/undo', { v: i }));
    ok(await t.call('update', 'secret/delete/del/undo', { versions: [1, 2] }));
    assert.equal((await get('del/undo', 1)).status, 404);
    assert.equal((await t.call('update', 'secret/undelete/del/undo', { versions: [1, 2] })).status, 204);
    const r = ok(await get('del/undo'));
    assert.deepEqual(r.data, { v: 2 });
    assert.equal(r.metadata.deletion_time, '');
    assert.deepEqual(ok(await get('del/undo', 1)).data, { v: 1 });
  });

  it('destroy removes the data for good: destroyed is true and undelete does not bring it back', async () => {
    for (let i = 1; i <= 2; i++) ok(await put('del/destroy', { v: i }));
    assert.equal((await t.call('update', 'secret/destroy/del/destroy', { versions: [1] })).status, 204);
    const r = await get('del/destroy', 1);
    assert.equal(r.status, 404);
    assert.equal(r.response?.data?.data, null);
    assert.equal((r.response?.data?.metadata as any).destroyed, true);
    assert.deepEqual(await versionKeys('secret/', 'del/destroy'), ['2'], 'the data of version 1 is removed from storage');
    ok(await t.call('update', 'secret/undelete/del/destroy', { versions: [1] }));
    const again = await get('del/destroy', 1);
    assert.equal(again.status, 404);
    assert.equal(again.response?.data?.data, null);
    assert.equal((await meta('del/destroy')).versions['1'].destroyed, true);
    assert.deepEqual(ok(await get('del/destroy', 2)).data, { v: 2 }, 'other versions are untouched');
  });

  it('destroying a soft-deleted version works, and a write after deleting the latest makes a new live version', async () => {
    ok(await put('del/mixed', { v: 1 }));
    ok(await t.call('delete', 'secret/data/del/mixed'));
    ok(await t.call('update', 'secret/destroy/del/mixed', { versions: [1] }));
    assert.equal((await meta('del/mixed')).versions['1'].destroyed, true);
    ok(await t.call('update', 'secret/undelete/del/mixed', { versions: [1] }));
    const v1 = (await meta('del/mixed')).versions['1'];
    assert.equal(v1.destroyed, true);
    assert.notEqual(v1.deletion_time, '', 'undelete leaves a destroyed version as it was');
    assert.equal(ok(await put('del/mixed', { v: 2 })).version, 2);
    assert.deepEqual(ok(await get('del/mixed')).data, { v: 2 });
  });

  it('delete, undelete and destroy refuse a missing, empty or invalid versions list and change nothing', async () => {
    ok(await put('del/badversions', { v: 1 }));
    const before = await meta('del/badversions');
    for (const op of ['delete', 'undelete', 'destroy']) {
      fails(await t.call('update', `secret/${op}/del/badversions`, {}), 400, /versions is required/);
      fails(await t.call('update', `secret/${op}/del/badversions`, { versions: [] }), 400, /versions is required/);
      fails(await t.call('update', `secret/${op}/del/badversions`, { versions: [0] }), 400, /versions must be whole numbers ≥ 1/);
      fails(await t.call('update', `secret/${op}/del/badversions`, { versions: ['one'] }), 400, /field "versions": expected a list of whole numbers/);
      fails(await t.call('update', `secret/${op}/del/badversions`, { versions: [1.5] }), 400, /field "versions"/);
    }
    assert.deepEqual(await meta('del/badversions'), before);
    assert.deepEqual(ok(await get('del/badversions')).data, { v: 1 });
  });
});

describe('metadata', () => {
  it('metadata GET shows current_version, oldest_version, every version and the created/updated times', async () => {
    ok(await put('md/shape', { v: 1 }));
    ok(await put('md/shape', { v: 2 }));
    ok(await t.call('update', 'secret/delete/md/shape', { versions: [1] }));
    const m = await meta('md/shape');
    assert.deepEqual(Object.keys(m).sort(), [
      'cas_required', 'created_time', 'current_version', 'custom_metadata', 'delete_version_after', 'max_versions',
      'oldest_version', 'updated_time', 'versions',
    ]);
    assert.equal(m.current_version, 2);
    assert.equal(m.oldest_version, 1);
    assert.equal(m.max_versions, 0);
    assert.equal(m.cas_required, false);
    assert.equal(m.delete_version_after, '0s');
    assert.equal(m.custom_metadata, null);
    assert.deepEqual(Object.keys(m.versions).sort(), ['1', '2']);
    for (const v of Object.values(m.versions) as any[]) assert.deepEqual(Object.keys(v).sort(), ['created_time', 'deletion_time', 'destroyed']);
    assert.notEqual(m.versions['1'].deletion_time, '');
    assert.equal(m.versions['2'].deletion_time, '');
    const created = Date.parse(m.created_time);
    const updated = Date.parse(m.updated_time);
    assert.ok(!Number.isNaN(created) && !Number.isNaN(updated));
    assert.ok(created <= Date.parse(m.versions['1'].created_time) + 1 && created <= updated);
    assert.ok(Date.parse(m.versions['1'].created_time) <= Date.parse(m.versions['2'].created_time));
  });

  it('metadata of a missing secret is a 404', async () => {
    fails(await t.call('read', 'secret/metadata/md/missing'), 404, /no secret at md\/missing/);
    fails(await t.call('patch', 'secret/metadata/md/missing', { max_versions: 2 }), 404, /no secret at md\/missing/);
    assert.equal((await t.call('read', 'secret/metadata/md/missing')).status, 404, 'a refused PATCH creates nothing');
  });

  it('custom_metadata is stored, returned with every version read, and a metadata PATCH merges it (null removes a key)', async () => {
    ok(await put('md/custom', { v: 1 }));
    ok(await t.call('update', 'secret/metadata/md/custom', { custom_metadata: { owner: 'team-a', env: 'prod' } }));
    assert.deepEqual((await meta('md/custom')).custom_metadata, { owner: 'team-a', env: 'prod' });
    assert.deepEqual(ok(await get('md/custom')).metadata.custom_metadata, { owner: 'team-a', env: 'prod' });
    assert.deepEqual(ok(await put('md/custom', { v: 2 })).custom_metadata, { owner: 'team-a', env: 'prod' });

    ok(await t.call('patch', 'secret/metadata/md/custom', { custom_metadata: { env: null, tier: 'gold' }, max_versions: 5 }));
    const m = await meta('md/custom');
    assert.deepEqual(m.custom_metadata, { owner: 'team-a', tier: 'gold' });
    assert.equal(m.max_versions, 5);
    assert.equal(m.current_version, 2, 'metadata changes make no new version');

    // A POST replaces custom_metadata as a whole; fields it does not send are kept.
    ok(await t.call('update', 'secret/metadata/md/custom', { custom_metadata: { only: 'this' } }));
    const replaced = await meta('md/custom');
    assert.deepEqual(replaced.custom_metadata, { only: 'this' });
    assert.equal(replaced.max_versions, 5);
  });

  it('custom_metadata with more than 64 keys or a non-string value is refused and nothing is stored', async () => {
    ok(await put('md/limits', { v: 1 }));
    ok(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: { keep: 'me' } }));
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    fails(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: many }), 400, /at most 64 keys/);
    fails(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: { n: 1 } }), 400, /custom_metadata\.n: values must be strings/);
    fails(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: { deep: { x: 'y' } } }), 400, /values must be strings/);
    fails(await t.call('patch', 'secret/metadata/md/limits', { custom_metadata: { n: 2 } }), 400, /values must be strings/);
    fails(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: ['a'] }), 400, /expected an object/);
    fails(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: { big: 'x'.repeat(513) } }), 400, /at most 512 bytes/);
    assert.deepEqual((await meta('md/limits')).custom_metadata, { keep: 'me' });
    // Exactly 64 keys is fine.
    const sixtyFour = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`k${i}`, 'v']));
    ok(await t.call('update', 'secret/metadata/md/limits', { custom_metadata: sixtyFour }));
    assert.equal(Object.keys((await meta('md/limits')).custom_metadata).length, 64);
    // A limit refused on a new key creates no key.
    fails(await t.call('update', 'secret/metadata/md/limits-new', { custom_metadata: many }), 400, /at most 64 keys/);
    fails(await t.call('read', 'secret/metadata/md/limits-new'), 404);
  });

  it('bad metadata settings are refused with a message and change nothing', async () => {
    ok(await put('md/badsettings', { v: 1 }));
    const before = await meta('md/badsettings');
    fails(await t.call('update', 'secret/metadata/md/badsettings', { max_versions: -1 }), 400, /max_versions.*at least 0/);
    fails(await t.call('update', 'secret/metadata/md/badsettings', { max_versions: 'many' }), 400, /max_versions.*whole number/);
    fails(await t.call('update', 'secret/metadata/md/badsettings', { delete_version_after: 'soon' }), 400, /delete_version_after.*not a duration/);
    fails(await t.call('update', 'secret/metadata/md/badsettings', { cas_required: 'maybe' }), 400, /cas_required.*true or false/);
    assert.deepEqual(await meta('md/badsettings'), before);
  });

  it('metadata DELETE removes every version, their data and the key from listings', async () => {
    for (let i = 1; i <= 3; i++) ok(await put('mddel/gone', { v: i }));
    ok(await put('mddel/stays', { v: 1 }));
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/mddel/')).keys, ['gone', 'stays']);
    assert.equal((await t.call('delete', 'secret/metadata/mddel/gone')).status, 204);
    fails(await t.call('read', 'secret/metadata/mddel/gone'), 404);
    for (const v of [0, 1, 2, 3]) fails(await get('mddel/gone', v), 404);
    assert.deepEqual(await versionKeys('secret/', 'mddel/gone'), [], 'no version data is left in storage');
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/mddel/')).keys, ['stays']);
    // Writing the key again starts over at version 1.
    assert.equal(ok(await put('mddel/gone', { v: 'again' })).version, 1);
  });
});

describe('listing', () => {
  it('LIST on metadata shows leaf names and folders (with a trailing slash), at one level', async () => {
    ok(await put('list/app/db', { v: 1 }));
    ok(await put('list/app/api/key', { v: 1 }));
    ok(await put('list/top', { v: 1 }));
    ok(await put('list/app2', { v: 1 }));
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/list/')).keys, ['app/', 'app2', 'top']);
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/list/app/')).keys, ['api/', 'db']);
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/list/app')).keys, ['api/', 'db'], 'the trailing slash is optional');
    const root = ok(await t.call('list', 'secret/metadata/')).keys as string[];
    assert.ok(root.includes('list/'), 'the mount root lists top-level folders');
  });

  it('a secret whose versions are all deleted is still listed; LIST of a folder with nothing in it is a 404 with no errors', async () => {
    ok(await put('list2/deleted', { v: 1 }));
    ok(await t.call('delete', 'secret/data/list2/deleted'));
    assert.deepEqual(ok(await t.call('list', 'secret/metadata/list2/')).keys, ['deleted']);
    const empty = await t.call('list', 'secret/metadata/list-nothing-here/');
    assert.equal(empty.status, 404);
    assert.equal(empty.error, null);
    assert.deepEqual(empty.response?.bare, { errors: [] });
  });
});

describe('PATCH (JSON merge patch)', () => {
  it('null removes a key, nested objects merge, other values replace, and the result is a new version', async () => {
    ok(await put('patch/merge', { keep: 'k', drop: 'd', nested: { a: 1, b: 2, inner: { x: 1 } }, list: [1, 2], replace: { obj: true } }));
    const w = ok(await t.call('patch', 'secret/data/patch/merge', { data: { drop: null, nested: { b: null, c: 3, inner: { y: 2 } }, list: [3], replace: 'now a string', added: 'new' } }));
    assert.equal(w.version, 2);
    assert.deepEqual(ok(await get('patch/merge')).data, {
      keep: 'k', nested: { a: 1, c: 3, inner: { x: 1, y: 2 } }, list: [3], replace: 'now a string', added: 'new',
    });
    assert.deepEqual(ok(await get('patch/merge', 1)).data.drop, 'd', 'the previous version is unchanged');
  });

  it('PATCH of a missing secret or of a soft-deleted latest version is a 404 and writes nothing', async () => {
    fails(await t.call('patch', 'secret/data/patch/missing', { data: { a: 1 } }), 404, /no live version of patch\/missing/);
    fails(await t.call('read', 'secret/metadata/patch/missing'), 404);
    ok(await put('patch/deleted', { a: 1 }));
    ok(await t.call('delete', 'secret/data/patch/deleted'));
    fails(await t.call('patch', 'secret/data/patch/deleted', { data: { a: 2 } }), 404, /no live version/);
    assert.equal((await meta('patch/deleted')).current_version, 1);
  });

  it('PATCH with a stale cas is refused and with the current cas succeeds', async () => {
    ok(await put('patch/cas', { a: 1 }));
    ok(await put('patch/cas', { a: 2 }));
    fails(await t.call('patch', 'secret/data/patch/cas', { data: { b: 1 }, options: { cas: 1 } }), 400, /did not match/);
    assert.equal((await meta('patch/cas')).current_version, 2);
    assert.equal(ok(await t.call('patch', 'secret/data/patch/cas', { data: { b: 1 }, options: { cas: 2 } })).version, 3);
  });

  it('PATCH without data is refused', async () => {
    ok(await put('patch/nodata', { a: 1 }));
    fails(await t.call('patch', 'secret/data/patch/nodata', {}), 400, /no data provided/);
    assert.equal((await meta('patch/nodata')).current_version, 1);
  });
});

describe('subkeys', () => {
  const value = { user: 'u', creds: { password: 'p', token: { id: 't', ttl: 5 } }, tags: ['a', 'b'], empty: {} };

  it('subkeys returns the structure with every value replaced by null', async () => {
    ok(await put('sub/k', value));
    const r = ok(await t.call('read', 'secret/subkeys/sub/k'));
    // As in Vault, a nested empty object is a leaf and shows as null.
    assert.deepEqual(r.subkeys, { user: null, creds: { password: null, token: { id: null, ttl: null } }, tags: null, empty: null });
    assert.equal(r.metadata.version, 1);
    assert.ok(!JSON.stringify(r).includes('"p"'), 'no value leaks');
  });

  it('depth limits the levels shown and version picks an older version', async () => {
    ok(await put('sub/k', { other: 1 }));
    assert.deepEqual(ok(await t.call('read', 'secret/subkeys/sub/k', { version: 1, depth: 1 })).subkeys, { user: null, creds: null, tags: null, empty: null });
    assert.deepEqual(ok(await t.call('read', 'secret/subkeys/sub/k', { version: 1, depth: 2 })).subkeys, { user: null, creds: { password: null, token: null }, tags: null, empty: null });
    assert.deepEqual(ok(await t.call('read', 'secret/subkeys/sub/k', { version: '1', depth: '0' })).subkeys.creds.token, { id: null, ttl: null });
    assert.deepEqual(ok(await t.call('read', 'secret/subkeys/sub/k')).subkeys, { other: null });
  });

  it('subkeys of a secret that is an empty object is an empty object', async () => {
    ok(await put('sub/empty', {}));
    assert.deepEqual(ok(await t.call('read', 'secret/subkeys/sub/empty')).subkeys, {});
  });

  it('subkeys of a missing secret is a 404, and of a deleted version a 404 with subkeys null', async () => {
    fails(await t.call('read', 'secret/subkeys/sub/missing'), 404);
    ok(await t.call('delete', 'secret/data/sub/k'));
    const r = await t.call('read', 'secret/subkeys/sub/k');
    assert.equal(r.status, 404);
    assert.equal(r.response?.data?.subkeys, null);
    assert.equal((r.response?.data?.metadata as any).version, 2);
    fails(await t.call('read', 'secret/subkeys/sub/k', { depth: -1 }), 400, /depth.*at least 0/);
  });
});

describe('bad input', () => {
  it('a write without data, with null data, or with data that is not an object is refused and stores nothing', async () => {
    ok(await put('bad/k', { v: 1 }));
    fails(await t.call('update', 'secret/data/bad/k', {}), 400, /no data provided/);
    fails(await t.call('update', 'secret/data/bad/k', { data: null }), 400, /no data provided/);
    for (const data of ['text', 42, ['a'], true]) {
      fails(await t.call('update', 'secret/data/bad/k', { data }), 400, /field "data": expected an object/);
    }
    fails(await t.call('update', 'secret/data/bad/new', {}), 400, /no data provided/);
    assert.equal((await t.call('read', 'secret/metadata/bad/new')).status, 404, 'a refused first write creates no key');
    assert.equal((await meta('bad/k')).current_version, 1);
    assert.deepEqual(ok(await get('bad/k')).data, { v: 1 });
  });

  it('a secret path ending with "/" is refused everywhere it names one secret', async () => {
    fails(await t.call('update', 'secret/data/bad/folder/', { data: { a: 1 } }), 400, /cannot end with "\/"/);
    fails(await t.call('read', 'secret/data/bad/folder/'), 400, /cannot end with "\/"/);
    fails(await t.call('update', 'secret/metadata/bad/folder/', { max_versions: 1 }), 400, /cannot end with "\/"/);
    fails(await t.call('update', 'secret/delete/bad/folder/', { versions: [1] }), 400, /cannot end with "\/"/);
    // Listing is where a trailing slash belongs: bad/folder/ is an empty folder, not an error.
    assert.deepEqual((await t.call('list', 'secret/metadata/bad/folder/')).response?.bare, { errors: [] });
    fails(await t.call('read', 'secret/data/bad/folder'), 404, /no secret at bad\/folder/);
  });

  it('unknown fields give a warning, not an error, and the write succeeds', async () => {
    const r = await t.call('update', 'secret/data/bad/unknown', { data: { a: 1 }, colour: 'blue', ttl: '1h' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.response?.warnings, ['ignored unknown parameters: colour, ttl']);
    assert.deepEqual(ok(await get('bad/unknown')).data, { a: 1 });
  });

  it('a bad version number on read is refused', async () => {
    ok(await put('bad/version', { v: 1 }));
    fails(await get('bad/version', -1), 400, /version.*at least 0/);
    fails(await t.call('read', 'secret/data/bad/version', { version: 'latest' }), 400, /version.*whole number/);
  });

  it('operations a path does not support are refused with 405', async () => {
    fails(await t.call('delete', 'secret/undelete/bad/version'), 405, /unsupported operation/);
    fails(await t.call('list', 'secret/data/bad/'), 405, /unsupported operation/);
  });
});

describe('concurrency', () => {
  it('20 concurrent writes to one key get versions 1..20, each exactly once, and each version holds its own write', async () => {
    ok(await t.call('update', 'secret/metadata/conc/many', { max_versions: 100 }));
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => put('conc/many', { writer: i })));
    const versions = results.map((r, i) => ok(r, `writer ${i}`).version as number);
    assert.deepEqual([...versions].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
    for (let i = 0; i < 20; i++) assert.deepEqual(ok(await get('conc/many', versions[i]!)).data, { writer: i });
    const m = await meta('conc/many');
    assert.equal(m.current_version, 20);
    assert.equal(Object.keys(m.versions).length, 20);
  });

  it('20 concurrent writes with the same cas: exactly one succeeds, the others are refused', async () => {
    ok(await put('conc/cas', { writer: 'first' }));
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => put('conc/cas', { writer: i }, { cas: 1 })));
    const winners = results.map((r, i) => [r, i] as const).filter(([r]) => r.status === 200);
    assert.equal(winners.length, 1);
    for (const r of results) if (r.status !== 200) fails(r, 400, /check-and-set parameter did not match the current version: current is 2/);
    const m = await meta('conc/cas');
    assert.equal(m.current_version, 2);
    assert.deepEqual(ok(await get('conc/cas')).data, { writer: winners[0]![1] });
  });

  it('20 concurrent first writes with cas 0 to a new key: exactly one creates it', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => put('conc/create', { writer: i }, { cas: 0 })));
    assert.equal(results.filter((r) => r.status === 200).length, 1);
    assert.equal(results.filter((r) => r.status === 400).length, 19);
    assert.equal((await meta('conc/create')).current_version, 1);
  });
});

describe('more than one KV mount', () => {
  it('a second KV mount is isolated from secret/', async () => {
    await mount('kv2');
    const mounts = ok(await t.call('read', 'sys/mounts'));
    assert.equal(mounts['kv2/'].type, 'kv');
    assert.equal(mounts['kv2/'].options.version, '2');
    ok(await t.call('update', 'kv2/data/shared/name', { data: { from: 'kv2' } }));
    ok(await put('shared/name', { from: 'secret' }));
    ok(await t.call('update', 'kv2/data/only-in-kv2', { data: { a: 1 } }));
    assert.deepEqual(ok(await t.call('read', 'kv2/data/shared/name')).data, { from: 'kv2' });
    assert.deepEqual(ok(await get('shared/name')).data, { from: 'secret' });
    assert.equal(ok(await t.call('read', 'kv2/data/shared/name')).metadata.version, 1);
    fails(await get('only-in-kv2'), 404);
    assert.deepEqual(ok(await t.call('list', 'kv2/metadata/')).keys, ['only-in-kv2', 'shared/']);
    ok(await t.call('delete', 'kv2/metadata/shared/name'));
    assert.deepEqual(ok(await get('shared/name')).data, { from: 'secret' }, 'deleting in kv2 leaves secret/ alone');
  });

  it('disabling a mount removes its data from storage, and a new mount at the same path starts empty', async () => {
    await mount('kvgone');
    for (let i = 1; i <= 3; i++) ok(await t.call('update', `kvgone/data/k${i}`, { data: { i } }));
    ok(await t.call('update', 'kvgone/config', { max_versions: 4 }));
    const uuid = t.core.router.get('kvgone/')!.entry.uuid;
    assert.ok((await t.core.storage.list(`logical/${uuid}/`)).length > 0, 'the mount has stored data');
    assert.equal((await t.call('delete', 'sys/mounts/kvgone')).status, 204);
    assert.deepEqual(await t.core.storage.list(`logical/${uuid}/`), [], 'nothing of the mount is left in storage');
    fails(await t.call('read', 'kvgone/data/k1'), 404, /no handler for route/);
    assert.equal(ok(await t.call('read', 'sys/mounts'))['kvgone/'], undefined);
    await mount('kvgone');
    fails(await t.call('read', 'kvgone/data/k1'), 404);
    assert.equal(ok(await t.call('read', 'kvgone/config')).max_versions, 0);
    assert.deepEqual(ok(await get('basic/one')).data.user, 'alice', 'secret/ is untouched');
  });
});

describe('KV v2 over HTTP', () => {

  it('a read answers the Vault JSON envelope with data and metadata', async () => {
    const w = await srv.api('POST', 'secret/data/http/env', { body: { data: { a: 'b' } } });
    assert.equal(w.status, 200);
    assert.equal(w.body.data.version, 1);
    const r = await srv.api('GET', 'secret/data/http/env');
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type')?.startsWith('application/json'), true);
    assert.deepEqual(Object.keys(r.body).sort(), ['auth', 'data', 'lease_duration', 'lease_id', 'renewable', 'request_id', 'warnings', 'wrap_info']);
    assert.match(r.body.request_id, /^[0-9a-f-]{36}$/);
    assert.equal(r.body.lease_id, '');
    assert.equal(r.body.renewable, false);
    assert.equal(r.body.lease_duration, 0);
    assert.equal(r.body.wrap_info, null);
    assert.equal(r.body.warnings, null);
    assert.equal(r.body.auth, null);
    assert.deepEqual(r.body.data.data, { a: 'b' });
    assert.equal(r.body.data.metadata.version, 1);
  });

  it('?version=N reads an older version and PUT writes like POST', async () => {
    assert.equal((await srv.api('PUT', 'secret/data/http/ver', { body: { data: { v: 1 } } })).status, 200);
    assert.equal((await srv.api('POST', 'secret/data/http/ver', { body: { data: { v: 2 } } })).status, 200);
    assert.deepEqual((await srv.api('GET', 'secret/data/http/ver?version=1')).body.data.data, { v: 1 });
    assert.deepEqual((await srv.api('GET', 'secret/data/http/ver')).body.data.data, { v: 2 });
  });

  it('the LIST verb and GET ?list=true both list; an empty listing is a 404 whose body is exactly {"errors":[]}', async () => {
    await srv.api('POST', 'secret/data/http/list/app/db', { body: { data: { a: 1 } } });
    await srv.api('POST', 'secret/data/http/list/leaf', { body: { data: { a: 1 } } });
    for (const [method, path] of [['LIST', 'secret/metadata/http/list/'], ['GET', 'secret/metadata/http/list/?list=true'], ['GET', 'secret/metadata/http/list?list=1']] as const) {
      const r = await srv.api(method, path);
      assert.equal(r.status, 200, `${method} ${path}`);
      assert.deepEqual(r.body.data.keys, ['app/', 'leaf'], `${method} ${path}`);
    }
    for (const [method, path] of [['LIST', 'secret/metadata/http/nothing/'], ['GET', 'secret/metadata/http/nothing/?list=true']] as const) {
      const r = await srv.api(method, path);
      assert.equal(r.status, 404);
      assert.equal(r.text, '{"errors":[]}');
    }
  });

  it('reading a soft-deleted version over HTTP is a 404 with data null and the version metadata in the envelope', async () => {
    await srv.api('POST', 'secret/data/http/del', { body: { data: { a: 1 } } });
    assert.equal((await srv.api('DELETE', 'secret/data/http/del')).status, 204);
    const r = await srv.api('GET', 'secret/data/http/del');
    assert.equal(r.status, 404);
    assert.equal(r.body.errors, undefined);
    assert.equal(r.body.data.data, null);
    assert.equal(r.body.data.metadata.version, 1);
    assert.notEqual(r.body.data.metadata.deletion_time, '');
  });

  it('PATCH with application/merge-patch+json merges', async () => {
    await srv.api('POST', 'secret/data/http/patch', { body: { data: { a: 1, b: 2 } } });
    const p = await srv.api('PATCH', 'secret/data/http/patch', { body: { data: { b: null, c: 3 } }, headers: { 'content-type': 'application/merge-patch+json' } });
    assert.equal(p.status, 200);
    assert.equal(p.body.data.version, 2);
    assert.deepEqual((await srv.api('GET', 'secret/data/http/patch')).body.data.data, { a: 1, c: 3 });
  });

  it('errors come back as {"errors":[message]} with the right status', async () => {
    await srv.api('POST', 'secret/data/http/err', { body: { data: { a: 1 } } });
    const stale = await srv.api('POST', 'secret/data/http/err', { body: { data: { a: 2 }, options: { cas: 0 } } });
    assert.equal(stale.status, 400);
    assert.equal(stale.body.errors.length, 1);
    assert.match(stale.body.errors[0], /check-and-set parameter did not match/);
    const missing = await srv.api('GET', 'secret/data/http/never');
    assert.equal(missing.status, 404);
    assert.match(missing.body.errors[0], /no secret at http\/never/);
    const noToken = await srv.api('POST', 'secret/data/http/err', { body: { data: { a: 'x' } }, token: null });
    assert.equal(noToken.status, 403);
    assert.match(noToken.body.errors[0], /missing client token/);
    const badJson = await srv.api('POST', 'secret/data/http/err', { raw: '{"data":', headers: { 'content-type': 'application/json' } });
    assert.equal(badJson.status, 400);
    assert.match(badJson.body.errors[0], /not valid JSON/);
    assert.deepEqual((await srv.api('GET', 'secret/data/http/err')).body.data.data, { a: 1 }, 'nothing was written by the refused calls');
  });

  it('unknown fields over HTTP come back as warnings in the envelope', async () => {
    const r = await srv.api('POST', 'secret/data/http/warn', { body: { data: { a: 1 }, extra: true } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.warnings, ['ignored unknown parameters: extra']);
  });
});

describe('Vault behaviours clients rely on', () => {
  it('deleting, undeleting or destroying a secret that does not exist answers 204, as Vault does', async () => {
    for (const [op, path, data] of [
      ['delete', 'secret/data/never/was', {}],
      ['update', 'secret/delete/never/was', { versions: [1] }],
      ['update', 'secret/undelete/never/was', { versions: [1] }],
      ['update', 'secret/destroy/never/was', { versions: [1] }],
      ['delete', 'secret/metadata/never/was', {}],
    ] as const) {
      const r = await t.call(op, path, data);
      assert.equal(r.status, 204, `${op} ${path}: ${r.error?.message}`);
    }
    assert.equal((await t.call('read', 'secret/metadata/never/was')).status, 404);
  });

  it('an undeleted version under delete_version_after gets a fresh deletion time, not eternal life', async () => {
    ok(await t.call('update', 'secret/metadata/undel-dva', { delete_version_after: '1h' }));
    ok(await put('undel-dva', { a: 1 }));
    ok(await t.call('delete', 'secret/data/undel-dva'));
    ok(await t.call('update', 'secret/undelete/undel-dva', { versions: [1] }));
    const v = (await meta('undel-dva')).versions['1'];
    const left = Date.parse(v.deletion_time) - Date.now();
    assert.ok(left > 3500_000 && left <= 3600_000, `deletion_time ${v.deletion_time} should be about an hour away`);
    assert.equal((await get('undel-dva')).status, 200);
  });

  it('durations read back in Go format (1h0m0s), as Vault returns them', async () => {
    await mount('dur');
    ok(await t.call('update', 'dur/config', { delete_version_after: '90m' }));
    assert.equal(ok(await t.call('read', 'dur/config')).delete_version_after, '1h30m0s');
    ok(await t.call('update', 'dur/metadata/k', { delete_version_after: 75 }));
    assert.equal((ok(await t.call('read', 'dur/metadata/k'))).delete_version_after, '1m15s');
  });
});

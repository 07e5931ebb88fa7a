import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import vault from 'node-vault';
import { startDevProcess } from '../helpers/server.js';
import { refused } from '../helpers/node-vault.js';

// The real `aegis dev` server as a child process, driven with the real node-vault client exactly as a Vault user
// would drive Vault's KV v2 engine.
const dev = await startDevProcess();
const v = vault({ apiVersion: 'v1', endpoint: dev.address, token: dev.rootToken });
/** The same client, listing with `GET ?list=1` instead of the LIST verb. */
const vGet = vault({ apiVersion: 'v1', endpoint: dev.address, token: dev.rootToken, noCustomHTTPVerbs: true });

describe('KV v2 through node-vault against aegis dev', () => {
  it('write creates versions and read returns the latest, or a specific one with ?version=N', async () => {
    const w1 = await v.write('secret/data/app/db', { data: { user: 'alice', password: 's3cret' } });
    assert.equal(w1.data.version, 1);
    assert.equal(w1.data.destroyed, false);
    const w2 = await v.write('secret/data/app/db', { data: { user: 'alice', password: 'rotated', port: 5432 } });
    assert.equal(w2.data.version, 2);

    const latest = await v.read('secret/data/app/db');
    assert.deepEqual(latest.data.data, { user: 'alice', password: 'rotated', port: 5432 });
    assert.equal(latest.data.metadata.version, 2);
    assert.equal(latest.lease_id, '');
    assert.equal(latest.renewable, false);

    const first = await v.read('secret/data/app/db?version=1');
    assert.deepEqual(first.data.data, { user: 'alice', password: 's3cret' });
    assert.equal(first.data.metadata.version, 1);
  });

  it('a write with options.cas is checked: a stale cas fails with 400 and the message, the right one succeeds', async () => {
    await v.write('secret/data/app/cas', { data: { a: 1 }, options: { cas: 0 } });
    const err = await refused(v.write('secret/data/app/cas', { data: { a: 2 }, options: { cas: 0 } }), 400);
    assert.match(err.message, /check-and-set parameter did not match the current version/);
    assert.deepEqual(err.response.body.errors.length, 1);
    assert.equal((await v.write('secret/data/app/cas', { data: { a: 2 }, options: { cas: 1 } })).data.version, 2);
    assert.deepEqual((await v.read('secret/data/app/cas')).data.data, { a: 2 });
  });

  it('list works with the LIST verb and with GET ?list=1, showing leaves and folders', async () => {
    await v.write('secret/data/app/nested/one', { data: { x: 1 } });
    const byVerb = await v.list('secret/metadata/app');
    assert.deepEqual(byVerb.data.keys, ['cas', 'db', 'nested/']);
    const byGet = await vGet.list('secret/metadata/app/');
    assert.deepEqual(byGet.data.keys, ['cas', 'db', 'nested/']);
    assert.deepEqual((await v.list('secret/metadata/app/nested/')).data.keys, ['one']);
  });

  it('listing an empty folder fails with 404 and an empty errors list, with either list style', async () => {
    for (const client of [v, vGet]) {
      const err = await refused(client.list('secret/metadata/nothing-here/'), 404);
      assert.deepEqual(err.response.body, { errors: [] });
      assert.equal(err.message, 'Status 404');
    }
  });

  it('update sends a JSON merge patch: null removes a key, others are added or replaced, and it makes a new version', async () => {
    await v.write('secret/data/app/patch', { data: { keep: 'k', drop: 'd', nested: { a: 1 } } });
    const res = await v.update('secret/data/app/patch', { data: { drop: null, nested: { b: 2 }, added: true } });
    assert.equal(res.data.version, 2);
    assert.deepEqual((await v.read('secret/data/app/patch')).data.data, { keep: 'k', nested: { a: 1, b: 2 }, added: true });
    await refused(v.update('secret/data/app/no-such-secret', { data: { a: 1 } }), 404);
  });

  it('delete soft-deletes the latest version: reading it fails with 404 carrying data null and the metadata', async () => {
    await v.write('secret/data/app/soft', { data: { v: 1 } });
    await v.write('secret/data/app/soft', { data: { v: 2 } });
    await v.delete('secret/data/app/soft');
    const err = await refused(v.read('secret/data/app/soft'), 404);
    assert.equal(err.response.body.data.data, null);
    assert.equal(err.response.body.data.metadata.version, 2);
    assert.notEqual(err.response.body.data.metadata.deletion_time, '');
    assert.equal(err.response.body.data.metadata.destroyed, false);
    assert.deepEqual((await v.read('secret/data/app/soft?version=1')).data.data, { v: 1 }, 'version 1 is untouched');
  });

  it('undelete (a write to secret/undelete) restores the data', async () => {
    await v.write('secret/data/app/restore', { data: { v: 1 } });
    await v.write('secret/delete/app/restore', { versions: [1] });
    await refused(v.read('secret/data/app/restore'), 404);
    await v.write('secret/undelete/app/restore', { versions: [1] });
    const r = await v.read('secret/data/app/restore');
    assert.deepEqual(r.data.data, { v: 1 });
    assert.equal(r.data.metadata.deletion_time, '');
  });

  it('destroy removes a version for good; undelete does not bring it back', async () => {
    await v.write('secret/data/app/gone', { data: { v: 1 } });
    await v.write('secret/data/app/gone', { data: { v: 2 } });
    await v.write('secret/destroy/app/gone', { versions: [1] });
    // node-vault's own helper for the same endpoint.
    await v.destroySecretVersions({ path: 'app/gone', versions: [2] });
    for (const n of [1, 2]) {
      const err = await refused(v.read(`secret/data/app/gone?version=${n}`), 404);
      assert.equal(err.response.body.data.data, null);
      assert.equal(err.response.body.data.metadata.destroyed, true);
    }
    await v.write('secret/undelete/app/gone', { versions: [1, 2] });
    const still = await refused(v.read('secret/data/app/gone?version=1'), 404);
    assert.equal(still.response.body.data.metadata.destroyed, true);
  });

  it('metadata can be written, read and deleted; deleting it removes every version and the key from the listing', async () => {
    await v.write('secret/data/app/meta', { data: { v: 1 } });
    await v.write('secret/data/app/meta', { data: { v: 2 } });
    await v.write('secret/metadata/app/meta', { max_versions: 5, custom_metadata: { owner: 'team-a' } });
    const m = await v.read('secret/metadata/app/meta');
    assert.equal(m.data.current_version, 2);
    assert.equal(m.data.oldest_version, 1);
    assert.equal(m.data.max_versions, 5);
    assert.deepEqual(m.data.custom_metadata, { owner: 'team-a' });
    assert.deepEqual(Object.keys(m.data.versions).sort(), ['1', '2']);
    assert.ok(!Number.isNaN(Date.parse(m.data.created_time)) && !Number.isNaN(Date.parse(m.data.updated_time)));
    assert.deepEqual((await v.read('secret/data/app/meta')).data.metadata.custom_metadata, { owner: 'team-a' });

    assert.ok((await v.list('secret/metadata/app/')).data.keys.includes('meta'));
    await v.delete('secret/metadata/app/meta');
    await refused(v.read('secret/metadata/app/meta'), 404);
    await refused(v.read('secret/data/app/meta'), 404);
    await refused(v.read('secret/data/app/meta?version=1'), 404);
    assert.ok(!(await v.list('secret/metadata/app/')).data.keys.includes('meta'));
  });

  it('errors come back as node-vault errors with the right status and the server message', async () => {
    const missing = await refused(v.read('secret/data/app/never-written'), 404);
    assert.match(missing.message, /no secret at app\/never-written/);
    assert.deepEqual(Object.keys(missing.response.body), ['errors']);

    const anonymous = vault({ apiVersion: 'v1', endpoint: dev.address });
    anonymous.token = ''; // not even VAULT_TOKEN from the environment
    const noToken = await refused(anonymous.write('secret/data/app/anon', { data: { a: 1 } }), 403);
    assert.match(noToken.message, /permission denied: missing client token/);
    await refused(anonymous.read('secret/data/app/db'), 403);

    const badToken = vault({ apiVersion: 'v1', endpoint: dev.address, token: 'not-a-real-token' });
    const invalid = await refused(badToken.read('secret/data/app/db'), 403);
    assert.match(invalid.message, /invalid token/);
    await refused(v.read('secret/data/app/anon'), 404); // the refused writes stored nothing

    const noData = await refused(v.write('secret/data/app/bad', { options: {} }), 400);
    assert.match(noData.message, /no data provided/);
    const folder = await refused(v.write('secret/data/app/folder/', { data: { a: 1 } }), 400);
    assert.match(folder.message, /cannot end with "\/"/);
  });

  it('the dev server logged no errors while serving these requests', () => {
    assert.doesNotMatch(dev.stderr(), /"level":50|unhandled error/);
  });
});

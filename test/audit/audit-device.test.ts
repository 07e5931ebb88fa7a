import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyAuditLog } from '../../src/audit/verify.js';
import { Core, KeyFileUnseal, SqliteStorage } from '../../src/core/index.js';
import { createLogger } from '../../src/telemetry/index.js';
import { makeCore, request, type TestCore } from '../helpers/core.js';
import { enableFileDevice, entries, fileLines, joinLines, leakForms, tokenWithPolicy, type Entry } from './audit-log.js';

const HMAC = /^hmac-sha256:[0-9a-f]{64}$/;

async function auditHash(t: TestCore, device: string, input: string): Promise<string> {
  const r = await t.call('update', `sys/audit-hash/${device}`, { input });
  assert.equal(r.status, 200, r.error?.message);
  const hash = (r.response!.data as { hash: string }).hash;
  assert.match(hash, HMAC);
  return hash;
}

/** Sends a request with a known id, so its entries can be found. */
async function send(t: TestCore, op: Parameters<TestCore['call']>[0], path: string, data: Record<string, unknown> = {}, token: string | null = t.rootToken) {
  const req = request(op, path, data, token);
  const res = await t.core.handle(req);
  return { id: req.id, ...res };
}

const byId = (es: Entry[], id: string) => es.filter((e) => e.request.id === id);

describe('audit entries: one per request and one per response', () => {
  let t: TestCore;
  let file: string;

  before(async () => {
    t = await makeCore();
    file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
  });

  it('a secret read produces a request entry then a response entry with the same request id', async () => {
    assert.equal((await t.call('update', 'secret/data/app', { data: { password: 'x' } })).status, 200);
    const r = await send(t, 'read', 'secret/data/app');
    assert.equal(r.status, 200);
    const mine = byId(entries(file), r.id);
    assert.deepEqual(mine.map((e) => e.type), ['request', 'response']);
    const [req, res] = mine as [Entry, Entry];
    assert.deepEqual(
      { operation: req.request.operation, path: req.request.path, mount_type: req.request.mount_type, remote: req.request.remote_address },
      { operation: 'read', path: 'secret/data/app', mount_type: 'kv', remote: '127.0.0.1' },
    );
    assert.equal(req.response, undefined, 'a request entry carries no response');
    assert.equal(res.response?.status, 200);
    assert.ok(res.seq > req.seq);
    assert.deepEqual(res.auth?.policies, ['root']);
  });

  it('every successful call of every kind (write, read, list, patch, delete, token create) has both entries', async () => {
    const calls = [
      await send(t, 'create', 'secret/data/many', { data: { a: '1' } }),
      await send(t, 'read', 'secret/data/many'),
      await send(t, 'list', 'secret/metadata/'),
      await send(t, 'patch', 'secret/data/many', { data: { b: '2' } }),
      await send(t, 'delete', 'secret/data/many'),
      await send(t, 'update', 'auth/token/create', { policies: ['default'] }),
      await send(t, 'read', 'sys/audit'),
    ];
    const all = entries(file);
    for (const c of calls) {
      assert.ok(c.status < 300, `${c.id}: ${c.error?.message}`);
      const mine = byId(all, c.id);
      assert.deepEqual(mine.map((e) => e.type), ['request', 'response'], `entries for ${mine[0]?.request.path}`);
      assert.equal(mine[1]!.response!.status, c.status);
    }
  });

  it('a request the engine rejects (404) is audited with the request, the status and the error', async () => {
    const r = await send(t, 'read', 'secret/data/never-written');
    assert.equal(r.status, 404);
    const mine = byId(entries(file), r.id);
    assert.deepEqual(mine.map((e) => e.type), ['request', 'response']);
    assert.equal(mine[1]!.response?.status, 404);
    assert.ok(mine[1]!.error && mine[1]!.error.length > 0, 'the error is logged');
  });

  it('denied requests are audited with the denial: no token, a bad token, a token without a policy for the path', async () => {
    const { token: weak } = await tokenWithPolicy(t, 'only-other', 'permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/other/");');
    const bogus = 'aegis.s.this-token-does-not-exist-0123456789';
    const cases = [
      { name: 'no token', res: await send(t, 'read', 'secret/data/app', {}, null), error: /missing client token/ },
      { name: 'bad token', res: await send(t, 'read', 'secret/data/app', {}, bogus), error: /invalid token/ },
      { name: 'no policy', res: await send(t, 'read', 'secret/data/app', {}, weak), error: /permission denied/ },
      { name: 'no policy, write', res: await send(t, 'update', 'secret/data/app', { data: { password: 'stolen' } }, weak), error: /permission denied/ },
    ];
    const all = entries(file);
    for (const c of cases) {
      assert.equal(c.res.status, 403, c.name);
      const mine = byId(all, c.res.id);
      assert.ok(mine.length >= 1, `${c.name}: the denied request is in the log`);
      assert.match(mine[0]!.error ?? '', c.error, c.name);
      assert.equal(mine[0]!.request.path, 'secret/data/app', c.name);
      assert.ok(!mine.some((e) => e.response?.status === 200), `${c.name}: no success logged`);
    }
    const [none, bad, nopol] = cases.map((c) => byId(all, c.res.id)[0]!);
    assert.equal(none!.request.client_token, null);
    assert.equal(none!.auth, null);
    assert.equal(bad!.request.client_token, await auditHash(t, 'file', bogus), 'a bad token is logged as its HMAC, so it can be searched');
    assert.equal(bad!.auth, null);
    assert.equal(nopol!.auth?.client_token, await auditHash(t, 'file', weak), 'the denied caller is identified');
    assert.deepEqual(nopol!.auth?.policies, ['default', 'only-other']);
    const raw = readFileSync(file, 'utf8');
    assert.equal(raw.includes(bogus), false, 'the bad token is not in clear');
    assert.equal(raw.includes('stolen'), false, 'the payload of a denied write is HMACed too');
  });

  it('each entry is a complete line and the whole log verifies', () => {
    const r = verifyAuditLog(readFileSync(file, 'utf8'));
    assert.equal(r.ok, true, r.message);
    assert.ok(readFileSync(file, 'utf8').endsWith('}\n'));
  });

  it('sys/audit lists the device with its normalised options', async () => {
    const r = await t.call('read', 'sys/audit');
    assert.equal(r.status, 200);
    const d = (r.response!.data as Record<string, { type: string; options: Record<string, string>; path: string }>)['file/'];
    assert.deepEqual({ type: d?.type, options: d?.options, path: d?.path }, { type: 'file', options: { file_path: file, mode: '0600' }, path: 'file/' });
  });
});

describe('audit entries never hold secrets, tokens or accessors in clear', () => {
  let t: TestCore;
  let file: string;
  let raw = '';
  const secrets = { password: 'correct-horse-battery-staple', apiKey: 'AKIAIOSFODNN7EXAMPLE', nested: 'p@ss/with "quotes" ünïcødé' };
  const pin = 987654321;
  let child = { token: '', accessor: '' };
  let rootAccessor = '';
  let ids: Record<string, string> = {};

  before(async () => {
    t = await makeCore();
    file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    const w = await send(t, 'update', 'secret/data/app', { data: { password: secrets.password, api_key: secrets.apiKey, deep: { list: [secrets.nested] }, pin } });
    assert.equal(w.status, 200);
    const p = await send(t, 'patch', 'secret/data/app', { data: { extra: secrets.apiKey } });
    assert.equal(p.status, 200);
    const rd = await send(t, 'read', 'secret/data/app');
    assert.equal((rd.response!.data as { data: { password: string } }).data.password, secrets.password);
    const created = await send(t, 'update', 'auth/token/create', { policies: ['reader'], meta: { owner: 'alice' } });
    assert.equal(created.status, 200, created.error?.message);
    child = { token: created.response!.auth!.client_token, accessor: created.response!.auth!.accessor };
    const self = await send(t, 'read', 'auth/token/lookup-self', {}, child.token);
    assert.equal(self.status, 200, self.error?.message);
    const rootSelf = await send(t, 'read', 'auth/token/lookup-self');
    rootAccessor = (rootSelf.response!.data as { accessor: string }).accessor;
    const byAcc = await send(t, 'update', 'auth/token/lookup-accessor', { accessor: child.accessor });
    assert.equal(byAcc.status, 200, byAcc.error?.message);
    const lookup = await send(t, 'update', 'auth/token/lookup', { token: child.token });
    assert.equal(lookup.status, 200, lookup.error?.message);
    ids = { write: w.id, read: rd.id, create: created.id, self: self.id, byAcc: byAcc.id };
    raw = readFileSync(file, 'utf8');
  });

  it('the raw file holds none of the secret values written and read, in any common encoding', () => {
    for (const v of [...Object.values(secrets), String(pin)]) {
      for (const f of leakForms(v)) assert.equal(raw.includes(f), false, `secret value ${JSON.stringify(v)} found in the audit file as ${JSON.stringify(f)}`);
    }
  });

  it('the raw file holds neither the root token, the child token nor either accessor', () => {
    const needles: [string, string][] = [['root token', t.rootToken], ['child token', child.token], ['child accessor', child.accessor], ['root accessor', rootAccessor]];
    for (const [what, v] of needles) {
      assert.ok(v.length >= 16, `${what} looks too short to search for: ${v}`);
      for (const f of leakForms(v)) assert.equal(raw.includes(f), false, `${what} found in the audit file`);
    }
  });

  it('secret values appear as the HMAC that sys/audit-hash gives for them', async () => {
    const all = entries(file);
    const [wreq] = byId(all, ids.write!) as [Entry];
    const data = wreq.request.data.data as { password: string; api_key: string; deep: { list: string[] }; pin: string };
    assert.equal(data.password, await auditHash(t, 'file', secrets.password));
    assert.equal(data.api_key, await auditHash(t, 'file', secrets.apiKey));
    assert.deepEqual(data.deep, { list: [await auditHash(t, 'file', secrets.nested)] }, 'nested values are HMACed, structure kept');
    assert.equal(data.pin, await auditHash(t, 'file', String(pin)), 'numbers are HMACed too');
    const rres = byId(all, ids.read!).find((e) => e.type === 'response')!;
    assert.equal(rres.response!.data.data.password, data.password, 'the value read back is logged as the same HMAC');
    assert.equal(rres.response!.data.metadata.version, 2, 'declared-safe fields (version) stay in clear');
  });

  it('reads of a secret reuse its HMACs only while the stored version is the same: each version, rewrite and destroy shows', async () => {
    const path = 'secret/data/reused';
    const readPassword = async (version?: number) => {
      const r = await send(t, 'read', path, version === undefined ? {} : { version });
      const res = byId(entries(file), r.id).find((e) => e.type === 'response')!;
      const data = res.response!.data?.data as { password: string } | null;
      return { status: r.status, logged: data === null ? null : data.password };
    };
    assert.equal((await t.call('update', path, { data: { password: 'first' } })).status, 200);
    const first = await auditHash(t, 'file', 'first');
    assert.equal((await readPassword()).logged, first);
    assert.equal((await readPassword()).logged, first, 'a second read of the same version: same HMAC');
    assert.equal((await t.call('update', path, { data: { password: 'second' } })).status, 200);
    assert.equal((await readPassword()).logged, await auditHash(t, 'file', 'second'), 'the new current version is logged as its own value');
    assert.equal((await readPassword(1)).logged, first, 'an old version is still logged as its value');
    assert.equal((await t.call('update', 'secret/destroy/reused', { versions: [1] })).status, 204);
    const destroyed = await readPassword(1);
    assert.equal(destroyed.status, 404);
    assert.equal(destroyed.logged, null, 'a destroyed version logs no value');
  });

  it('sys/audit-hash returns exactly the HMAC the log holds for a token and an accessor (operators can search)', async () => {
    const all = entries(file);
    const tokenHash = await auditHash(t, 'file', child.token);
    const accessorHash = await auditHash(t, 'file', child.accessor);
    const created = byId(all, ids.create!).find((e) => e.type === 'response')!;
    assert.equal(created.response!.auth!.client_token, tokenHash);
    assert.equal(created.response!.auth!.accessor, accessorHash);
    const self = byId(all, ids.self!);
    assert.equal(self[0]!.request.client_token, tokenHash);
    assert.equal(self[0]!.auth!.client_token, tokenHash);
    assert.equal(self[0]!.auth!.accessor, accessorHash);
    // lookup-self answers with the token's id and accessor: logged as HMACs.
    assert.equal(self[1]!.response!.data.id, tokenHash);
    assert.equal(self[1]!.response!.data.accessor, accessorHash);
    assert.equal(byId(all, ids.byAcc!)[0]!.request.data.accessor, accessorHash);
    // A search by that HMAC finds every request the token made.
    assert.equal(all.filter((e) => e.auth?.client_token === tokenHash).length, 2);
    const rootHash = await auditHash(t, 'file', t.rootToken);
    assert.ok(all.filter((e) => e.request.client_token === rootHash).length >= 10);
  });

  it('token metadata is HMACed; an unknown device has no hash (404)', async () => {
    const created = byId(entries(file), ids.create!)[0]!;
    assert.equal(created.request.data.meta.owner, await auditHash(t, 'file', 'alice'));
    const r = await t.call('update', 'sys/audit-hash/nope', { input: 'x' });
    assert.equal(r.status, 404);
  });
});

describe('each audit device has its own HMAC key and chain', () => {
  it('two devices log the same requests with different HMACs, each matching its own sys/audit-hash', async () => {
    const t = await makeCore();
    const a = join(t.dir, 'a.log');
    const b = join(t.dir, 'b.log');
    await enableFileDevice(t, 'a', a);
    await enableFileDevice(t, 'b', b);
    const w = await send(t, 'update', 'secret/data/two', { data: { v: 'same-secret-value' } });
    assert.equal(w.status, 200);
    const [ea, eb] = [byId(entries(a), w.id), byId(entries(b), w.id)];
    assert.deepEqual([ea.map((e) => e.type), eb.map((e) => e.type)], [['request', 'response'], ['request', 'response']]);
    const [ha, hb] = [await auditHash(t, 'a', t.rootToken), await auditHash(t, 'b', t.rootToken)];
    assert.notEqual(ha, hb);
    assert.equal(ea[0]!.request.client_token, ha);
    assert.equal(eb[0]!.request.client_token, hb);
    assert.notEqual(ea[0]!.request.data.data.v, eb[0]!.request.data.data.v);
    assert.equal(ea[0]!.request.data.data.v, await auditHash(t, 'a', 'same-secret-value'));
    assert.equal(readFileSync(a, 'utf8').includes(hb.slice(12)), false, "device b's HMAC of the token never appears in a's log");
    for (const f of [a, b]) assert.equal(verifyAuditLog(readFileSync(f, 'utf8')).ok, true, f);
  });
});

/**
 * A second Core on the same SQLite file (the restart of a server): auto-unsealed from the first one's key file,
 * or unsealed with its key share.
 */
async function restartCore(t: TestCore, opts: { autoUnseal?: boolean } = {}): Promise<Core> {
  const autoUnseal = opts.autoUnseal ? new KeyFileUnseal(join(t.dir, 'unseal.key')) : null;
  const core = new Core({ storage: new SqliteStorage({ path: t.dbPath, synchronous: 'normal' }), logger: createLogger('silent'), autoUnseal });
  await core.start();
  if (!opts.autoUnseal) await core.submitUnsealKey(t.keys[0]!.toString('hex'));
  assert.equal(core.barrier.sealed, false);
  return core;
}

function callOn(core: Core, token: string) {
  return (op: Parameters<TestCore['call']>[0], path: string, data: Record<string, unknown> = {}) => core.handle(request(op, path, data, token));
}

describe('the chain survives a restart', () => {
  it('a new Core on the same storage and audit file continues the chain; the whole file verifies', async () => {
    const t = await makeCore();
    const file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    assert.equal((await t.call('update', 'secret/data/r', { data: { v: 'before' } })).status, 200);
    const tokenHashBefore = await auditHash(t, 'file', t.rootToken);
    await t.core.stop();
    const before = fileLines(file);
    const last = JSON.parse(before.at(-1)!) as Entry;

    const core = await restartCore(t);
    try {
      const call = callOn(core, t.rootToken);
      assert.equal((await call('read', 'secret/data/r')).status, 200);
      assert.equal((await call('update', 'secret/data/r', { data: { v: 'after' } })).status, 200);
    } finally {
      await core.stop();
    }
    const after = fileLines(file);
    assert.deepEqual(after.slice(0, before.length), before, 'the old lines are untouched');
    const next = JSON.parse(after[before.length]!) as Entry;
    assert.deepEqual({ seq: next.seq, prev: next.prev_hash }, { seq: last.seq + 1, prev: last.hash });
    assert.equal(after.length, before.length + 4);
    const r = verifyAuditLog(readFileSync(file, 'utf8'));
    assert.equal(r.ok, true, r.message);
    assert.equal(next.request.client_token, tokenHashBefore, 'the device keeps its HMAC key across restarts');
  });

  it('a partial last line left by a crash is ended, and the chain continues from the last intact line', async () => {
    const t = await makeCore({ autoUnseal: true });
    const file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    assert.equal((await t.call('update', 'secret/data/c', { data: { v: '1' } })).status, 200);
    await t.core.stop();
    const intact = fileLines(file);
    const last = JSON.parse(intact.at(-1)!) as Entry;
    const half = intact.at(-1)!.replace(`"seq":${last.seq}`, `"seq":${last.seq + 1}`).slice(0, 150);
    appendFileSync(file, half); // the crash: half a line, no newline

    const core = await restartCore(t, { autoUnseal: true });
    try {
      assert.equal((await callOn(core, t.rootToken)('read', 'secret/data/c')).status, 200);
    } finally {
      await core.stop();
    }
    const text = readFileSync(file, 'utf8');
    const lines = fileLines(file);
    assert.equal(lines[intact.length], half, 'the partial line is kept as it was, on its own line');
    const next = JSON.parse(lines[intact.length + 1]!) as Entry;
    assert.deepEqual({ seq: next.seq, prev: next.prev_hash }, { seq: last.seq + 1, prev: last.hash });
    assert.equal(lines.length, intact.length + 3);
    // verify accepts the file, naming the crash remnant the chain skips over; without it, the chain is whole.
    const r = verifyAuditLog(text);
    assert.deepEqual({ ok: r.ok, torn: r.torn }, { ok: true, torn: [intact.length + 1] });
    assert.match(r.message, /cut short by a crash/);
    const without = lines.filter((_, i) => i !== intact.length);
    assert.equal(verifyAuditLog(joinLines(without)).ok, true);
  });

  it('a last line missing only its newline is kept as an entry and continued, and the file verifies', async () => {
    const t = await makeCore();
    const file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    await t.core.stop();
    const text = readFileSync(file, 'utf8');
    writeFileSync(file, text.slice(0, -1));
    const core = await restartCore(t);
    try {
      assert.equal((await callOn(core, t.rootToken)('list', 'secret/metadata/')).status, 404);
    } finally {
      await core.stop();
    }
    const r = verifyAuditLog(readFileSync(file, 'utf8'));
    assert.equal(r.ok, true, r.message);
    assert.equal(r.lines, fileLines(file).length);
    assert.ok(r.lines >= 3);
  });

  it('after log rotation (rename + reopen) the new file starts mid-chain: it verifies with --partial, and old + new verify whole', async () => {
    const t = await makeCore();
    const file = join(t.dir, 'audit.log');
    await enableFileDevice(t, 'file', file);
    assert.equal((await t.call('update', 'secret/data/rot', { data: { v: '1' } })).status, 200);
    renameSync(file, `${file}.1`);
    await t.core.audit.reopen();
    assert.equal((await t.call('read', 'secret/data/rot')).status, 200);
    const old = readFileSync(`${file}.1`, 'utf8');
    const fresh = readFileSync(file, 'utf8');
    assert.equal(fileLines(file).length, 2, 'new entries go to the new file');
    assert.equal(verifyAuditLog(fresh, { partial: true }).ok, true);
    assert.equal(verifyAuditLog(fresh).problem, 'truncated-start');
    assert.equal(verifyAuditLog(old + fresh).ok, true);
  });
});

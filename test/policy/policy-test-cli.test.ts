import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startTestServer, type CliResult, type InProcessServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const APP = `@id("read-app")
permit (principal, action in [Aegis::Action::"read", Aegis::Action::"list"], resource in Aegis::Path::"secret/data/app/");

@id("no-app-admin")
forbid (principal, action, resource in Aegis::Path::"secret/data/app/admin/");
`;

const CASES = {
  cases: [
    { name: 'app reads its secrets', policies: ['app'], action: 'read', path: 'secret/data/app/db', expect: 'allow' },
    { name: 'app cannot write its secrets', policies: ['app'], action: 'update', path: 'secret/data/app/db', expect: 'deny' },
    { name: 'app admin area is forbidden', policies: ['app'], action: 'read', path: '/v1/secret/data/app/admin/key', expect: 'deny' },
    { name: 'other tokens get nothing', policies: ['default'], action: 'read', path: 'secret/data/app/db', expect: 'deny' },
    { policies: ['root'], action: 'sudo', path: 'sys/anything', expect: 'allow' },
  ],
};

let dir: string;

function file(name: string, content: string | object): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

/** A failure must be exactly one line on stderr (the error), nothing on stdout and a non-zero exit. */
function assertOneLineError(r: CliResult, message: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0\n${r.stdout}`);
  const err = lines(r.stderr);
  assert.equal(err.length, 1, `stderr should be one line:\n${r.stderr}`);
  assert.match(err[0]!, /^Error: /);
  assert.match(err[0]!, message);
  assert.doesNotMatch(r.stdout, /PASS|FAIL/);
}

before(() => {
  dir = tempDir('policy-cli');
});

describe('aegis policy test with local policies', () => {
  it('passes (exit 0) and prints a PASS line per case when every case matches', async () => {
    const r = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${file('app.cedar', APP)}`]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = lines(r.stdout);
    assert.equal(out.filter((l) => l.startsWith('PASS')).length, 5);
    assert.equal(out.filter((l) => l.startsWith('FAIL')).length, 0);
    for (const c of CASES.cases.slice(0, 4)) assert.ok(out.some((l) => l.startsWith('PASS') && l.includes(c.name!)), `no PASS line for ${c.name}`);
    assert.ok(out.some((l) => /^PASS .*sudo sys\/anything as \[root\]/.test(l)), 'an unnamed case is named by its action, path and policies');
    assert.ok(out.some((l) => l.includes('app admin area is forbidden') && l.includes('forbidden by app/no-app-admin')), 'the reason names the rule');
    assert.equal(out.at(-1), '5 passed, 0 failed');
  });

  it('exits 1 and prints a FAIL line naming the case when one expectation is wrong', async () => {
    const wrong = structuredClone(CASES);
    wrong.cases[1]!.expect = 'allow';
    const r = await runCli(['policy', 'test', file('wrong.json', wrong), '--local', `app=${file('app.cedar', APP)}`]);
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    const out = lines(r.stdout);
    const fails = out.filter((l) => l.startsWith('FAIL'));
    assert.equal(fails.length, 1, r.stdout);
    assert.match(fails[0]!, /app cannot write its secrets: expected allow, got deny/);
    assert.equal(out.filter((l) => l.startsWith('PASS')).length, 4);
    assert.equal(out.at(-1), '4 passed, 1 failed');
  });

  it('uses meta and client_ip from a case', async () => {
    const scoped = `@id("own-team") permit (principal, action == Aegis::Action::"read", resource in Aegis::Path::"secret/data/")
when { resource.hasTag("2") && principal.hasTag("team") && resource.getTag("2") == principal.getTag("team") && context.client_ip.isInRange(ip("10.0.0.0/8")) };`;
    const cases = [
      { name: 'alpha from inside', policies: ['team'], meta: { team: 'alpha' }, client_ip: '10.1.2.3', action: 'read', path: 'secret/data/alpha/x', expect: 'allow' },
      { name: 'alpha from outside', policies: ['team'], meta: { team: 'alpha' }, client_ip: '192.0.2.1', action: 'read', path: 'secret/data/alpha/x', expect: 'deny' },
      { name: 'alpha reads beta', policies: ['team'], meta: { team: 'alpha' }, client_ip: '10.1.2.3', action: 'read', path: 'secret/data/beta/x', expect: 'deny' },
    ];
    const r = await runCli(['policy', 'test', file('team-cases.json', cases), '--local', `team=${file('team.cedar', scoped)}`]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(lines(r.stdout).at(-1), '3 passed, 0 failed');
  });

  it('--dir loads every *.cedar file, named after the file', async () => {
    const policies = join(dir, 'policies');
    mkdirSync(policies);
    writeFileSync(join(policies, 'app.cedar'), APP);
    writeFileSync(join(policies, 'README.md'), 'not a policy');
    const r = await runCli(['policy', 'test', file('cases.json', CASES), '--dir', policies]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(lines(r.stdout).at(-1), '5 passed, 0 failed');
  });

  it('--format json reports each case with its decision', async () => {
    const r = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${file('app.cedar', APP)}`, '--format', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const results = JSON.parse(r.stdout) as { name: string; passed: boolean; expected: string; decision: string }[];
    assert.equal(results.length, 5);
    assert.deepEqual(results.map((x) => x.decision), ['allow', 'deny', 'deny', 'deny', 'allow']);
    assert.ok(results.every((x) => x.passed));
  });

  it('an invalid local policy file exits non-zero with Cedar\'s message', async () => {
    const r = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${file('broken.cedar', 'permit (principal, action, resource')}`]);
    assertOneLineError(r, /policy app does not parse: .*unexpected end of input/);
    const unknownAction = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${file('reed.cedar', 'permit (principal, action == Aegis::Action::"reed", resource);')}`]);
    assertOneLineError(unknownAction, /policy app does not validate against the Aegis schema: .*unrecognized action `Aegis::Action::"reed"`/);
  });

  it('a missing local policy file exits non-zero with one line', async () => {
    const r = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${join(dir, 'no-such.cedar')}`]);
    assertOneLineError(r, /cannot read .*no-such\.cedar: ENOENT/);
  });
});

describe('aegis policy test: malformed cases files', () => {
  const bad: [string, string | object, RegExp][] = [
    ['bad JSON', '{"cases": [', /is not valid JSON/],
    ['an unknown action', { cases: [{ policies: ['app'], action: 'reed', path: 'secret/data/app/x', expect: 'allow' }] }, /case 1: "action" must be one of read, create, update, delete, list, sudo/],
    ['a missing expect', { cases: [CASES.cases[0], { policies: ['app'], action: 'read', path: 'secret/data/app/x' }] }, /case 2: "expect" must be "allow" or "deny"/],
    ['an expect that is neither allow nor deny', [{ policies: ['app'], action: 'read', path: 'secret/data/app/x', expect: 'yes' }], /case 1: "expect"/],
    ['policies that are not a list', [{ policies: 'app', action: 'read', path: 'secret/data/app/x', expect: 'allow' }], /case 1: "policies"/],
    ['a missing path', [{ policies: ['app'], action: 'read', expect: 'allow' }], /case 1: "path"/],
    ['no cases at all', { cases: [] }, /expected \{"cases": \[\.\.\.\]\}/],
  ];
  for (const [what, content, message] of bad) {
    it(`${what} exits non-zero with one line on stderr`, async () => {
      const r = await runCli(['policy', 'test', file(`bad-${what.replace(/\W+/g, '-')}.json`, content), '--local', `app=${file('app.cedar', APP)}`]);
      assertOneLineError(r, message);
    });
  }

  it('a missing cases file exits non-zero with one line on stderr', async () => {
    const r = await runCli(['policy', 'test', join(dir, 'absent.json'), '--local', `app=${file('app.cedar', APP)}`]);
    assertOneLineError(r, /cannot read .*absent\.json: ENOENT/);
  });
});

describe('aegis policy test against the stored policies of a running server', () => {
  let srv: InProcessServer;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    srv = await startTestServer();
    env = { AEGIS_ADDR: srv.address, AEGIS_TOKEN: srv.rootToken };
    const w = await srv.api('PUT', 'sys/policies/cedar/app', { body: { policy: APP } });
    assert.equal(w.status, 204, w.text);
  });

  it('evaluates the stored policies when no --local is given', async () => {
    const r = await runCli(['policy', 'test', file('cases.json', CASES)], env);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.equal(lines(r.stdout).at(-1), '5 passed, 0 failed');
    assert.ok(lines(r.stdout).some((l) => l.includes('forbidden by app/no-app-admin')));
  });

  it('follows a change to the stored policy (it reads the server, not a local copy)', async () => {
    const relaxed = '@id("read-app") permit (principal, action in [Aegis::Action::"read", Aegis::Action::"update"], resource in Aegis::Path::"secret/data/app/");';
    const w = await srv.api('PUT', 'sys/policies/cedar/app', { body: { policy: relaxed } });
    assert.equal(w.status, 204, w.text);
    try {
      const r = await runCli(['policy', 'test', file('cases.json', CASES)], env);
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      const fails = lines(r.stdout).filter((l) => l.startsWith('FAIL'));
      assert.equal(fails.length, 2, r.stdout);
      assert.ok(fails.some((l) => l.includes('app cannot write its secrets: expected deny, got allow')));
      assert.ok(fails.some((l) => l.includes('app admin area is forbidden: expected deny, got allow')));

      // --local still overrides what the server holds.
      const local = await runCli(['policy', 'test', file('cases.json', CASES), '--local', `app=${file('app.cedar', APP)}`], env);
      assert.equal(local.code, 0, `${local.stdout}\n${local.stderr}`);
    } finally {
      const back = await srv.api('PUT', 'sys/policies/cedar/app', { body: { policy: APP } });
      assert.equal(back.status, 204, back.text);
    }
  });

  it('a token that may not read the policies gets a one-line permission error', async () => {
    const c = await srv.api('POST', 'auth/token/create', { body: { policies: ['default'] } });
    assert.equal(c.status, 200, c.text);
    const r = await runCli(['policy', 'test', file('cases.json', CASES)], { ...env, AEGIS_TOKEN: c.body.auth.client_token as string });
    assertOneLineError(r, /permission denied/);
  });
});

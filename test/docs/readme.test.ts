import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PolicyEngine, runPolicyCases, ROOT_POLICY, DEFAULT_POLICY } from '../../src/policy/index.js';
import { ROOT } from '../helpers/server.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

it('the Cedar policy shown in the README validates against the schema and does what the text says', () => {
  const block = /```cedar\n([\s\S]*?)```/.exec(readme);
  assert.ok(block, 'README has a cedar example');
  const text = block[1]!;
  assert.equal(PolicyEngine.compile({ name: 'app', text }).length, 4);
  const docs = [{ name: 'root', text: ROOT_POLICY }, { name: 'default', text: DEFAULT_POLICY }, { name: 'app', text }];
  const results = runPolicyCases(docs, [
    { policies: ['app'], action: 'read', path: 'secret/data/app/db', expect: 'allow' },
    { policies: ['app'], action: 'update', path: 'secret/data/app/db', expect: 'deny' },
    { policies: ['app'], action: 'read', path: 'secret/data/teams/pay/x', meta: { team: 'pay' }, expect: 'allow' },
    { policies: ['app'], action: 'read', path: 'secret/data/teams/ops/x', meta: { team: 'pay' }, expect: 'deny' },
    { policies: ['app'], action: 'read', path: 'secret/data/app/prod/db', client_ip: '10.1.2.3', expect: 'allow' },
    { policies: ['app'], action: 'read', path: 'secret/data/app/prod/db', client_ip: '192.0.2.1', expect: 'deny' },
  ]);
  for (const r of results) assert.ok(r.passed, `${r.name}: got ${r.decision} (${r.reason})`);
});

it('the README names the commands a newcomer types', () => {
  for (const s of ['npm ci', 'npm start', 'npm test']) assert.ok(readme.includes(s), s);
});

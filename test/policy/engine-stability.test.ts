import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ROOT } from '../helpers/server.js';

// Node 20's V8 aborted the whole server after ~20,000 uncached Cedar decisions (a deoptimizer crash around the
// inlined JS->Wasm call). This runs 40,000 uncached decisions in a child process, which must exit normally.
it('survives 40,000 uncached decisions in a row (V8 JS->Wasm inlining crash stays fixed)', () => {
  // Progress output matters: the stream code it runs is what changed the maps that invalidated the caller.
  const script = `
    import { PolicyEngine } from './src/policy/engine.ts';
    import { ROOT_POLICY } from './src/policy/builtin.ts';
    const e = new PolicyEngine();
    e.load([{ name: 'root', text: ROOT_POLICY }]);
    const p = { accessor: 'acc', displayName: 'root', policies: ['root'], meta: {}, orphan: true, entityId: '' };
    let allowed = 0;
    for (let i = 0; i < 40000; i++) {
      if (e.decide(p, 'update', \`secret/data/w\${i}\`, '127.0.0.1').allowed) allowed++;
      if (i % 5000 === 0) process.stdout.write(i + ' ');
    }
    console.log('allowed', allowed);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.signal, null, `child died with ${r.signal}: ${r.stderr.slice(0, 500)}`);
  assert.equal(r.status, 0, r.stderr.slice(0, 500));
  assert.match(r.stdout, /allowed 40000/);
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compilePattern } from '../../src/core/path.js';
import { Router, type MountEntry } from '../../src/core/router.js';
import type { Backend, Route } from '../../src/core/request.js';
import type { SecureStore } from '../../src/core/barrier/index.js';

function route(pattern: string): Route {
  return { pattern, operations: {} } as unknown as Route;
}

function routerWith(patterns: string[]): Router {
  const r = new Router();
  const entry: MountEntry = { path: 'm/', type: 't', uuid: 'u', description: '', options: {} };
  r.add(entry, { routes: patterns.map(route) } as unknown as Backend, {} as SecureStore);
  return r;
}

describe('route patterns and matching', () => {
  it('a pattern knows its literal prefix, which every path it matches starts with', () => {
    assert.equal(compilePattern('health/service/:ns/:name').prefix, 'health/service');
    assert.equal(compilePattern('data/:path+').prefix, 'data');
    assert.equal(compilePattern(':name').prefix, '');
    assert.equal(compilePattern('config/').prefix, 'config');
    const rest = compilePattern('x/:rest*');
    for (const path of ['x', 'x/', 'x/a', 'x/a/b']) {
      assert.ok(rest.re.test(path), path);
      assert.ok(path.startsWith(rest.prefix), path);
    }
  });

  it('the first matching route wins, with its parameters, and a literal look-alike does not match', () => {
    const r = routerWith(['health/service/:ns/:name', 'health/:what', 'data/:path+', 'x/:rest*', ':any']);
    assert.deepEqual(r.match('m/health/service/default/web')?.params, { ns: 'default', name: 'web' });
    assert.equal(r.match('m/health/service/default/web')?.compiled?.route.pattern, 'health/service/:ns/:name');
    assert.deepEqual(r.match('m/health/node')?.params, { what: 'node' });
    assert.deepEqual(r.match('m/data/a/b/c')?.params, { path: 'a/b/c' });
    assert.deepEqual(r.match('m/x')?.params, { rest: '' });
    // "healthy" starts with the literal "health" but is another segment: only the catch-all matches it.
    assert.equal(r.match('m/healthy')?.compiled?.route.pattern, ':any');
    assert.equal(r.match('m/datum/q')?.compiled, null);
  });
});

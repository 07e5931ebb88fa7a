import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_POLICY, ROOT_POLICY, parsePolicyCases, runPolicyCases, type PolicyDoc } from '../policy/index.js';
import { AegisError } from '../core/errors.js';
import { action, client, withFormat, type CommonOptions } from './command.js';
import { CliError, type ApiClient } from './client.js';
import { printJson, say } from './output.js';

function readText(file: string): string {
  try {
    return file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

async function storedDocs(c: ApiClient): Promise<PolicyDoc[]> {
  const names = ((await c.ok('GET', 'sys/policies/cedar/', { query: { list: 'true' } })).body!.data as { keys: string[] }).keys;
  const docs: PolicyDoc[] = [];
  for (const name of names) {
    const d = (await c.ok('GET', `sys/policies/cedar/${name}`)).body!.data as { policy: string };
    docs.push({ name, text: d.policy });
  }
  return docs;
}

function localDocs(files: string[], dir: string | undefined): PolicyDoc[] {
  const docs = new Map<string, string>([['root', ROOT_POLICY], ['default', DEFAULT_POLICY]]);
  if (dir) {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.cedar')).sort()) docs.set(basename(f, '.cedar'), readText(join(dir, f)));
  }
  for (const spec of files) {
    const i = spec.indexOf('=');
    const [name, file] = i > 0 ? [spec.slice(0, i), spec.slice(i + 1)] : [basename(spec, '.cedar'), spec];
    docs.set(name, readText(file));
  }
  return [...docs].map(([name, text]) => ({ name, text }));
}

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('write, read, list, delete and test Cedar policies');

  policy.command('write')
    .description('store a policy (validated against the Aegis Cedar schema; refused if invalid)')
    .argument('<name>', 'policy name')
    .argument('<file>', 'Cedar file, or - for standard input')
    .action(action(async (name: string, file: string) => {
      await client().ok('PUT', `sys/policies/cedar/${name}`, { body: { policy: readText(file) } });
      say(`Success! Uploaded policy: ${name}`);
    }));

  withFormat(policy.command('read'))
    .description('print a policy')
    .argument('<name>', 'policy name')
    .action(action(async (name: string, o: CommonOptions) => {
      const d = (await client().ok('GET', `sys/policies/cedar/${name}`)).body!.data as { policy: string };
      if (o.format === 'json') return printJson(d);
      process.stdout.write(d.policy.endsWith('\n') ? d.policy : `${d.policy}\n`);
      return undefined;
    }));

  withFormat(policy.command('list'))
    .description('list policy names')
    .action(action(async (o: CommonOptions) => {
      const keys = ((await client().ok('GET', 'sys/policies/cedar/', { query: { list: 'true' } })).body!.data as { keys: string[] }).keys;
      if (o.format === 'json') return printJson(keys);
      keys.forEach((k) => say(k));
      return undefined;
    }));

  policy.command('delete')
    .description('delete a policy')
    .argument('<name>', 'policy name')
    .action(action(async (name: string) => {
      await client().ok('DELETE', `sys/policies/cedar/${name}`);
      say(`Success! Deleted policy: ${name}`);
    }));

  withFormat(policy.command('test'))
    .description('run allow/deny cases against the stored policies, or local files; exits 1 on any mismatch')
    .argument('<cases>', 'JSON file: {"cases": [{"policies": ["app"], "action": "read", "path": "secret/data/app/x", "expect": "allow"}]}')
    .option('--local <name=file>', 'use this local policy file instead of the stored ones (repeatable)', (v: string, p: string[] = []) => [...p, v])
    .option('--dir <dir>', 'use every *.cedar file of this folder (name = file name)')
    .action(action(async (casesFile: string, o: CommonOptions & { local?: string[]; dir?: string }) => {
      let cases;
      let json: unknown;
      try {
        json = JSON.parse(readText(casesFile));
      } catch (err) {
        if (err instanceof CliError) throw err;
        throw new CliError(`${casesFile} is not valid JSON: ${(err as Error).message}`);
      }
      let results;
      try {
        cases = parsePolicyCases(json);
        const docs = o.local || o.dir ? localDocs(o.local ?? [], o.dir) : await storedDocs(client());
        results = runPolicyCases(docs, cases);
      } catch (err) {
        if (err instanceof AegisError) throw new CliError(err.message);
        throw err;
      }
      const failed = results.filter((r) => !r.passed).length;
      if (o.format === 'json') {
        printJson(results.map((r) => ({ name: r.name, passed: r.passed, expected: r.case.expect, decision: r.decision, reason: r.reason })));
      } else {
        for (const r of results) say(`${r.passed ? 'PASS' : 'FAIL'}  ${r.name}: expected ${r.case.expect}, got ${r.decision} (${r.reason})`);
        say(`${results.length - failed} passed, ${failed} failed`);
      }
      return failed > 0 ? 1 : 0;
    }));
}

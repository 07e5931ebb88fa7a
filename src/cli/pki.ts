import type { Command } from 'commander';
import { action, client, withFormat, type CommonOptions } from './command.js';
import { printJson, printPairs } from './output.js';

interface CaStatus {
  trust_domain: string;
  key_type: string;
  roots: { id: number; serial_number: string; not_after: string; cross_signed: boolean }[];
  intermediates: { id: number; root: number; serial_number: string; not_after: string; active: boolean }[];
}

function show(s: CaStatus): void {
  printPairs([
    ['trust_domain', s.trust_domain],
    ['key_type', s.key_type],
    ...s.roots.map((r): [string, unknown] => [`root ${r.id}`, `${r.serial_number} until ${r.not_after}${r.cross_signed ? ' (cross-signed by the previous root)' : ''}`]),
    ...s.intermediates.map((i): [string, unknown] => [`intermediate ${i.id}`, `${i.serial_number} until ${i.not_after}, under root ${i.root}${i.active ? ' (active)' : ''}`]),
  ]);
}

export function registerPki(program: Command): void {
  const pki = program.command('pki').description('the trust domain CA: status and rotation');

  const commands: [name: string, description: string, method: string, path: string][] = [
    ['status', 'the roots and intermediates of the CA', 'GET', 'identity/ca'],
    ['rotate-intermediate', 'make a new intermediate under the current root; certificates of the old one stay valid until they expire', 'POST', 'identity/ca/rotate-intermediate'],
    ['rotate-root', 'make a new root, cross-signed by the current one, and a new intermediate; both roots stay in the bundle', 'POST', 'identity/ca/rotate-root'],
  ];
  for (const [name, description, method, path] of commands) {
    withFormat(pki.command(name))
      .description(description)
      .action(action(async (o: CommonOptions) => {
        const s = (await client().ok(method, path)).body as { data: CaStatus };
        if (o.format === 'json') return printJson(s.data);
        show(s.data);
      }));
  }
}

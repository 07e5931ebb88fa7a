import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { action, client, wholeNumber, withFormat, type CommonOptions } from './command.js';
import { CliError } from './client.js';
import { printJson, printList, printPairs, say, show } from './output.js';

interface TransitOptions extends CommonOptions {
  mount: string;
}

interface DataOptions extends TransitOptions {
  context?: string;
  keyVersion?: string;
  base64?: boolean;
}

const mountOf = (o: TransitOptions) => o.mount.replace(/^\/+|\/+$/g, '');

/** Text, `@file` or `-` (standard input) as base64 — or as given, with --base64, when it already is. */
function payload(arg: string | undefined, alreadyBase64: boolean | undefined, what: string): string {
  if (arg === undefined) throw new CliError(`give the ${what} as an argument, @file to read a file, or - for standard input`, 2);
  let bytes: Buffer;
  try {
    bytes = arg === '-' ? readFileSync(0) : arg.startsWith('@') ? readFileSync(arg.slice(1)) : Buffer.from(arg, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${arg === '-' ? 'standard input' : arg.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return alreadyBase64 ? bytes.toString('utf8').trim() : bytes.toString('base64');
}

/** The optional fields every data command shares: context (text, sent base64) and key_version. */
function common(o: DataOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.context !== undefined) body.context = Buffer.from(o.context, 'utf8').toString('base64');
  if (o.keyVersion !== undefined) body.key_version = wholeNumber(o.keyVersion, '--key-version');
  return body;
}

async function post(o: TransitOptions, path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await client().ok('POST', `${mountOf(o)}/${path}`, { body });
  return res.body as Record<string, unknown>;
}

/** Prints a response's data: JSON with --format json, else the given fields as a table. */
function output(o: CommonOptions, res: Record<string, unknown>, fields: string[]): void {
  if (o.format === 'json') return printJson(res);
  const d = (res.data ?? {}) as Record<string, unknown>;
  printPairs(fields.filter((f) => d[f] !== undefined).map((f) => [f, d[f]]));
}

function printKey(d: Record<string, unknown>): void {
  printPairs(Object.keys(d).filter((k) => k !== 'keys').sort().map((k) => [k, d[k]]));
  const keys = (d.keys ?? {}) as Record<string, unknown>;
  for (const n of Object.keys(keys).sort((a, b) => Number(a) - Number(b))) {
    const v = keys[n];
    say(`\n====== Version ${n} ======`);
    if (v !== null && typeof v === 'object') printPairs(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== ''));
    else printPairs([['creation_time', new Date(Number(v) * 1000).toISOString()]]);
  }
}

export function registerTransit(program: Command): void {
  const transit = program.command('transit').description('encryption as a service: named keys that never leave Aegis (Vault transit)');
  const cmd = (name: string) => withFormat(transit.command(name)).option('--mount <path>', 'the transit mount', 'transit');
  const dataOptions = (c: Command) => c
    .option('--context <text>', 'derivation context of a derived key (sent base64-encoded)')
    .option('--key-version <n>', 'key version to use (default: the latest)')
    .option('--base64', 'the input is already base64');

  cmd('create-key')
    .description('create a named key')
    .argument('<name>', 'key name')
    .option('--type <type>', 'aes256-gcm96, chacha20-poly1305, ecdsa-p256, ed25519 or hmac', 'aes256-gcm96')
    .option('--derived', 'derive a key per context (HKDF-SHA256)')
    .option('--exportable', 'allow the key material to be exported (cannot be undone)')
    .action(action(async (name: string, o: TransitOptions & { type: string; derived?: boolean; exportable?: boolean }) => {
      const res = await post(o, `keys/${name}`, { type: o.type, derived: o.derived === true, exportable: o.exportable === true });
      if (o.format === 'json') return printJson(res);
      for (const w of (res.warnings as string[] | undefined) ?? []) process.stderr.write(`Warning: ${w}\n`);
      say(`Success! Created ${o.type} key ${name} at ${mountOf(o)}/keys/${name}`);
      return undefined;
    }));

  cmd('keys')
    .description('list the named keys')
    .action(action(async (o: TransitOptions) => {
      const res = await client().call('GET', `${mountOf(o)}/keys`, { query: { list: 'true' } });
      if (res.status === 404) throw new CliError(`no keys in ${mountOf(o)}/`);
      if (res.status >= 400) throw new CliError(`${mountOf(o)}/keys: ${res.status} ${((res.body?.errors as string[]) ?? []).join('; ')}`);
      const keys = (res.body!.data as { keys: string[] }).keys;
      if (o.format === 'json') return printJson(keys);
      printList(keys);
      return undefined;
    }));

  cmd('key')
    .description("show a key's settings and versions (never its key material)")
    .argument('<name>', 'key name')
    .action(action(async (name: string, o: TransitOptions) => {
      const res = (await client().ok('GET', `${mountOf(o)}/keys/${name}`)).body as Record<string, unknown>;
      if (o.format === 'json') return printJson(res);
      printKey(res.data as Record<string, unknown>);
      return undefined;
    }));

  cmd('rotate')
    .description('add a new key version; new data uses it, old versions still decrypt and verify')
    .argument('<name>', 'key name')
    .action(action(async (name: string, o: TransitOptions) => {
      const res = await post(o, `keys/${name}/rotate`, {});
      if (o.format === 'json') return printJson(res);
      say(`Success! Rotated key ${name}: latest version ${show((res.data as Record<string, unknown>).latest_version)}`);
      return undefined;
    }));

  dataOptions(cmd('encrypt'))
    .description('encrypt text, @file or - (standard input); prints the vault:vN: ciphertext (creates an aes256-gcm96 key on first use)')
    .argument('<name>', 'key name')
    .argument('[plaintext]', 'text, @file, or - for standard input')
    .action(action(async (name: string, plaintext: string | undefined, o: DataOptions) => {
      const res = await post(o, `encrypt/${name}`, { plaintext: payload(plaintext, o.base64, 'plaintext'), ...common(o) });
      output(o, res, ['ciphertext', 'key_version']);
    }));

  cmd('decrypt')
    .description('decrypt a vault:vN: ciphertext and write the plaintext bytes to standard output (or base64 with --base64)')
    .argument('<name>', 'key name')
    .argument('<ciphertext>', 'vault:vN:…')
    .option('--context <text>', 'derivation context of a derived key (sent base64-encoded)')
    .option('--base64', 'print the plaintext base64-encoded, as the API returns it')
    .action(action(async (name: string, ciphertext: string, o: DataOptions) => {
      const res = await post(o, `decrypt/${name}`, { ciphertext, ...common(o) });
      if (o.format === 'json') return printJson(res);
      const plaintext = (res.data as { plaintext: string }).plaintext;
      if (o.base64) say(plaintext);
      else process.stdout.write(Buffer.from(plaintext, 'base64'));
      return undefined;
    }));

  cmd('rewrap')
    .description('re-encrypt a ciphertext with the latest key version (or --key-version) without revealing the plaintext')
    .argument('<name>', 'key name')
    .argument('<ciphertext>', 'vault:vN:…')
    .option('--context <text>', 'derivation context of a derived key (sent base64-encoded)')
    .option('--key-version <n>', 'key version to encrypt with (default: the latest)')
    .action(action(async (name: string, ciphertext: string, o: DataOptions) => {
      output(o, await post(o, `rewrap/${name}`, { ciphertext, ...common(o) }), ['ciphertext', 'key_version']);
    }));

  const signOptions = (c: Command) => dataOptions(c)
    .option('--hash-algorithm <alg>', 'sha2-256 (default), sha2-384, sha2-512, … (ECDSA)')
    .option('--marshaling-algorithm <alg>', 'asn1 (default) or jws (ECDSA)');
  const signBody = (o: DataOptions & { hashAlgorithm?: string; marshalingAlgorithm?: string }) => ({
    ...common(o),
    ...(o.hashAlgorithm ? { hash_algorithm: o.hashAlgorithm } : {}),
    ...(o.marshalingAlgorithm ? { marshaling_algorithm: o.marshalingAlgorithm } : {}),
  });

  signOptions(cmd('sign'))
    .description('sign text, @file or - with an ecdsa-p256 or ed25519 key; prints the vault:vN: signature')
    .argument('<name>', 'key name')
    .argument('[input]', 'text, @file, or - for standard input')
    .action(action(async (name: string, input: string | undefined, o: DataOptions & { hashAlgorithm?: string; marshalingAlgorithm?: string }) => {
      const res = await post(o, `sign/${name}`, { input: payload(input, o.base64, 'input'), ...signBody(o) });
      output(o, res, ['signature', 'key_version', 'public_key']);
    }));

  signOptions(cmd('verify'))
    .description('check a signature (or, with --hmac, an HMAC) of text, @file or -; prints valid true|false and exits 1 when it is not valid')
    .argument('<name>', 'key name')
    .argument('<signature>', 'vault:vN:…')
    .argument('[input]', 'text, @file, or - for standard input')
    .option('--hmac', 'the value is an HMAC from transit hmac/, not a signature')
    .action(action(async (name: string, signature: string, input: string | undefined, o: DataOptions & { hmac?: boolean; hashAlgorithm?: string; marshalingAlgorithm?: string }) => {
      const body = { input: payload(input, o.base64, 'input'), ...signBody(o), [o.hmac ? 'hmac' : 'signature']: signature };
      const res = await post(o, `verify/${name}`, body);
      output(o, res, ['valid']);
      return (res.data as { valid: boolean }).valid ? 0 : 1;
    }));
}

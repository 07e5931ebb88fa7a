export type Format = 'table' | 'json';

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Two aligned columns, as Vault's CLI prints key/value data. */
export function printPairs(pairs: [string, unknown][], header = true): void {
  if (pairs.length === 0) return;
  const width = Math.max(3, ...pairs.map(([k]) => k.length));
  const lines = header ? [`${'Key'.padEnd(width)}    Value`, `${'---'.padEnd(width)}    -----`] : [];
  for (const [k, v] of pairs) lines.push(`${k.padEnd(width)}    ${show(v)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function printList(keys: string[], title = 'Keys'): void {
  process.stdout.write(`${[title, '-'.repeat(title.length), ...keys].join('\n')}\n`);
}

export function show(v: unknown): string {
  if (v === null || v === undefined) return 'n/a';
  if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

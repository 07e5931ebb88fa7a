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

/**
 * A Vault response envelope as `vault read` prints it: the wrapping token when the response was wrapped, else the
 * lease (when there is one) followed by the data (or the auth block) as sorted pairs.
 */
export function printResponse(body: Record<string, unknown>): void {
  const w = body.wrap_info as Record<string, unknown> | null | undefined;
  if (w) {
    printPairs([
      ['wrapping_token:', w.token], ['wrapping_accessor:', w.accessor], ['wrapping_token_ttl:', `${w.ttl}s`],
      ['wrapping_token_creation_time:', w.creation_time], ['wrapping_token_creation_path:', w.creation_path],
      ...(w.wrapped_accessor ? [['wrapped_accessor:', w.wrapped_accessor] as [string, unknown]] : []),
    ]);
    return;
  }
  const pairs: [string, unknown][] = [];
  if (body.lease_id) pairs.push(['lease_id', body.lease_id], ['lease_duration', `${body.lease_duration}s`], ['lease_renewable', body.renewable]);
  const d = (body.data ?? body.auth ?? {}) as Record<string, unknown>;
  pairs.push(...Object.keys(d).sort().map((k): [string, unknown] => [k, d[k]]));
  printPairs(pairs);
}

// npm run bench -- <name> [--seconds N] [--clients N]: runs bench/<name>.ts, which prints one JSON line.
import { existsSync, readdirSync } from 'node:fs';

const name = process.argv[2];
const available = readdirSync(new URL('.', import.meta.url)).filter((f) => f.endsWith('.ts') && f !== 'run.ts').map((f) => f.replace(/\.ts$/, ''));
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <name> [--seconds N] [--clients N]\navailable: ${available.join(', ')}\n`);
  process.exit(2);
}
const file = new URL(`./${name}.ts`, import.meta.url);
if (!existsSync(file)) process.exit(2);
await import(file.href);

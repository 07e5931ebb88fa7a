import { createHash, randomBytes } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import type { HandlerContext, Route } from '../../core/request.js';
import { decodeBase64 } from './encoding.js';
import { hashAlgorithm } from './signing.js';

// Vault's random/ and hash/ paths: no key involved.
const MAX_RANDOM_BYTES = 128 * 1024;
// Every source is node:crypto's CSPRNG here (Vault's "seal" and "all" mix in an HSM's entropy, which Aegis has not).
const SOURCES = ['platform', 'seal', 'all'];

function format(value: unknown): 'base64' | 'hex' {
  if (value === 'base64' || value === 'hex') return value;
  throw new BadRequestError(`unsupported encoding format "${String(value)}": must be "hex" or "base64"`);
}

function randomRequest({ params, fields }: HandlerContext): { bytes: number; source: string } {
  // random, random/<bytes>, random/<source>, random/<source>/<bytes>
  let source = params.source ?? 'platform';
  let bytes: string | number = params.urlbytes ?? (fields.bytes as number);
  if (params.source !== undefined && params.urlbytes === undefined && /^\d+$/.test(params.source)) {
    source = 'platform';
    bytes = params.source;
  }
  if (!SOURCES.includes(source)) throw new BadRequestError(`unsupported entropy source "${source}": use platform, seal or all`);
  const n = typeof bytes === 'string' ? (/^\d{1,9}$/.test(bytes) ? Number(bytes) : NaN) : bytes;
  if (!Number.isSafeInteger(n) || n < 1) throw new BadRequestError(`invalid number of bytes "${String(bytes)}": a whole number ≥ 1`);
  if (n > MAX_RANDOM_BYTES) throw new BadRequestError(`bytes cannot be greater than ${MAX_RANDOM_BYTES}`);
  return { bytes: n, source };
}

export function utilRoutes(): Route[] {
  return [
    ...['random', 'random/:source', 'random/:source/:urlbytes'].map((pattern): Route => ({
      pattern,
      summary: 'Random bytes from the CSPRNG (default 32), base64 or hex.',
      // random_bytes is secret (often used as a key): HMACed.
      auditPlain: ['bytes', 'format', 'source'],
      fields: {
        bytes: { type: 'int', description: `how many bytes (1 to ${MAX_RANDOM_BYTES}; default 32)`, default: 32 },
        format: { type: 'string', description: 'base64 (default) or hex', default: 'base64' },
      },
      operations: {
        update: async (ctx) => {
          const { bytes } = randomRequest(ctx);
          const enc = format(ctx.fields.format);
          const raw = randomBytes(bytes);
          const random_bytes = raw.toString(enc);
          raw.fill(0);
          return { data: { random_bytes } };
        },
      },
    })),
    ...['hash', 'hash/:urlalgorithm'].map((pattern): Route => ({
      pattern,
      summary: 'The hash of base64 input (sha2-256 by default), hex or base64.',
      auditPlain: ['algorithm', 'format'],
      fields: {
        input: { type: 'string', description: 'base64 input', required: true },
        algorithm: { type: 'string', description: 'sha2-256 (default), sha2-224, sha2-384, sha2-512, sha3-224 … sha3-512', default: 'sha2-256' },
        format: { type: 'string', description: 'hex (default) or base64', default: 'hex' },
      },
      operations: {
        update: async ({ params, fields }) => {
          const algorithm = hashAlgorithm(params.urlalgorithm || (fields.algorithm as string));
          const enc = format(fields.format);
          return { data: { sum: createHash(algorithm).update(decodeBase64(fields.input as string, 'input')).digest(enc) } };
        },
      },
    })),
  ];
}

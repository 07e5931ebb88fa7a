import { AegisError, BadRequestError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { Response } from '../../core/request.js';
import { decodeBase64 } from './encoding.js';

// Vault's batch_input: the same operation over many items in one request. Each item succeeds or fails on its own
// (its error is in its result); the request answers 400 when any item failed — or partial_failure_response_code
// when some succeeded — with every result in the body either way.

export type Item = Record<string, unknown>;
const MAX_ITEMS = 10_000;

export const BATCH_FIELDS: FieldSpecs = {
  batch_input: { type: 'any', description: 'a list of items, each with the fields of a single request (and an optional reference echoed back)' },
  partial_failure_response_code: { type: 'int', description: 'HTTP status when some batch items failed and some succeeded (default 400)', min: 1, max: 599 },
};

/** The items of the request: batch_input's, or one made of the top-level fields. */
export function batchItems(fields: Record<string, unknown>, single: Item): { items: Item[]; batch: boolean } {
  const raw = fields.batch_input;
  if (raw === undefined || raw === null) return { items: [single], batch: false };
  if (!Array.isArray(raw)) throw new BadRequestError('batch_input must be a list of objects');
  if (raw.length === 0) throw new BadRequestError('missing batch input to process');
  if (raw.length > MAX_ITEMS) throw new BadRequestError(`batch_input has ${raw.length} items; at most ${MAX_ITEMS} are allowed per request`);
  raw.forEach((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new BadRequestError(`batch_input[${i}] must be an object`);
  });
  return { items: raw as Item[], batch: true };
}

/** An item's string field (a 400 for that item when it has another type). */
export function itemString(item: Item, name: string): string | undefined {
  const v = item[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new BadRequestError(`${name} must be a string`);
  return v;
}

export function requiredString(item: Item, name: string, missing: string): string {
  const v = itemString(item, name);
  if (v === undefined) throw new BadRequestError(missing);
  return v;
}

/** An optional base64 field, decoded (empty = absent). */
export function itemBase64(item: Item, name: string): Buffer | undefined {
  const v = itemString(item, name);
  return v ? decodeBase64(v, name) : undefined;
}

export function itemInt(item: Item, name: string): number | undefined {
  const raw = item[name];
  if (raw === undefined || raw === null) return undefined;
  const n = typeof raw === 'string' && /^-?\d+$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new BadRequestError(`${name} must be a whole number`);
  return n;
}

/**
 * Runs `fn` over every item. A single request answers its result or its error (400); a batch answers every
 * result, each failed item with `error`, and the status described above.
 */
export function runBatch(req: { items: Item[]; batch: boolean }, fields: Record<string, unknown>, fn: (item: Item) => Item): Response {
  const results = req.items.map((item): Item => {
    try {
      return fn(item);
    } catch (err) {
      // Client mistakes stay with their item; anything else is a server fault and fails the request.
      if (err instanceof AegisError && err.status === 400) return { error: err.message };
      throw err;
    }
  });
  if (!req.batch) {
    const only = results[0]!;
    if (typeof only.error === 'string') throw new BadRequestError(only.error);
    return { data: only };
  }
  const batch_results = results.map((r, i) => ({ ...r, reference: typeof req.items[i]!.reference === 'string' ? req.items[i]!.reference : '' }));
  const failed = results.filter((r) => typeof r.error === 'string').length;
  if (failed === 0) return { data: { batch_results } };
  const override = fields.partial_failure_response_code as number | undefined;
  return { status: override !== undefined && failed < results.length ? override : 400, data: { batch_results } };
}

import { formatDuration } from '../../core/duration.js';
import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { HandlerContext, Response, Route } from '../../core/request.js';
import type { KvStore } from './kv-store.js';
import { mergePatch } from './merge-patch.js';
import { metadataView, validateCustomMetadata, versionView, type KeyMetadata } from './metadata.js';

// Response fields that describe versions rather than hold secrets: logged in clear. `data` never is.
const PLAIN = ['metadata', 'version', 'versions', 'created_time', 'deletion_time', 'destroyed', 'custom_metadata', 'current_version',
  'oldest_version', 'max_versions', 'cas_required', 'delete_version_after', 'updated_time', 'keys', 'options', 'depth'];

const VERSIONS: FieldSpecs = { versions: { type: 'ints', description: 'version numbers', max: 1000 } };
const METADATA_FIELDS: FieldSpecs = {
  max_versions: { type: 'int', description: 'versions to keep (0 = the mount setting)', min: 0, max: 10_000 },
  cas_required: { type: 'bool', description: 'require options.cas on every write' },
  delete_version_after: { type: 'duration', description: 'soft-delete versions this long after they are written (0 = never)' },
  custom_metadata: { type: 'map', description: 'up to 64 string pairs; not secret' },
};
const WRITE_FIELDS: FieldSpecs = {
  data: { type: 'map', description: 'the secret: an object of values' },
  options: { type: 'map', description: 'options.cas: the version expected to be current (0 = must not exist)' },
};

function secretKey(ctx: HandlerContext): string {
  const key = ctx.params.path!;
  if (key.endsWith('/')) throw new BadRequestError(`invalid secret path "${key}": a secret's path cannot end with "/"`);
  return key;
}

function casOption(options: unknown): number | undefined {
  const cas = (options as Record<string, unknown> | undefined)?.cas;
  if (cas === undefined || cas === null) return undefined;
  const n = typeof cas === 'string' && /^\d+$/.test(cas) ? Number(cas) : cas;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new BadRequestError('options.cas must be a whole number ≥ 0');
  return n;
}

function requireVersions(ctx: HandlerContext): number[] {
  const v = ctx.fields.versions as number[] | undefined;
  if (!v || v.length === 0) throw new BadRequestError('versions is required: the version numbers to act on, e.g. [1, 2]');
  if (v.some((n) => n < 1)) throw new BadRequestError('versions must be whole numbers ≥ 1');
  return v;
}

function applyMetadataFields(m: KeyMetadata, f: Record<string, unknown>): void {
  if (f.max_versions !== undefined) m.max_versions = f.max_versions as number;
  if (f.cas_required !== undefined) m.cas_required = f.cas_required as boolean;
  if (f.delete_version_after !== undefined) m.delete_version_after = f.delete_version_after as number;
  if (f.custom_metadata !== undefined) m.custom_metadata = validateCustomMetadata(f.custom_metadata);
}

/** Subkeys: the secret's structure with every leaf replaced by null, to `depth` levels (0 = all). */
function subkeys(value: unknown, depth: number, level = 1): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  if (depth > 0 && level > depth) return null;
  // A nested empty object is a leaf too (Vault: "empty maps and non-map values" become null); the secret itself stays {}.
  if (level > 1 && Object.keys(value).length === 0) return null;
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, subkeys(v, depth, level + 1)]));
}

/** Vault's KV version 2 API over a KvStore. */
export function kvRoutes(kv: KvStore): Route[] {
  const exists = async (ctx: HandlerContext) => (await kv.metadata(ctx.params.path!)) !== null;

  async function readData(ctx: HandlerContext): Promise<Response> {
    const r = await kv.read(secretKey(ctx), (ctx.fields.version as number | undefined) ?? 0);
    const metadata = versionView(r.meta, r.version);
    // A deleted or destroyed version: 404 with its metadata, so clients can tell it from "never existed".
    if (r.data === null) return { status: 404, data: { data: null, metadata } };
    return { data: { data: r.data, metadata }, auditDataId: r.dataId };
  }

  async function writeData(ctx: HandlerContext, patch: boolean): Promise<Response> {
    const key = secretKey(ctx);
    const data = ctx.fields.data as Record<string, unknown> | undefined;
    if (!data) throw new BadRequestError('no data provided: send {"data": {...}}');
    let value = data;
    if (patch) {
      const current = await kv.read(key, 0).catch((err) => {
        if (err instanceof NotFoundError) return null;
        throw err;
      });
      if (!current || current.data === null) throw new NotFoundError(`no live version of ${key} to patch: write it first`);
      value = mergePatch(current.data, data) as Record<string, unknown>;
    }
    const { meta, version } = await kv.write(key, value, casOption(ctx.fields.options));
    return { data: versionView(meta, version) };
  }

  return [
    {
      pattern: 'config',
      summary: 'Mount-wide settings: max_versions, cas_required, delete_version_after.',
      auditPlain: PLAIN,
      fields: { max_versions: METADATA_FIELDS.max_versions!, cas_required: METADATA_FIELDS.cas_required!, delete_version_after: METADATA_FIELDS.delete_version_after! },
      operations: {
        read: async () => {
          const c = await kv.config();
          return { data: { max_versions: c.max_versions, cas_required: c.cas_required, delete_version_after: formatDuration(c.delete_version_after) } };
        },
        update: async ({ fields: f }) => {
          const c = await kv.config();
          await kv.writeConfig({
            max_versions: (f.max_versions as number | undefined) ?? c.max_versions,
            cas_required: (f.cas_required as boolean | undefined) ?? c.cas_required,
            delete_version_after: (f.delete_version_after as number | undefined) ?? c.delete_version_after,
          });
        },
      },
    },
    {
      pattern: 'data/:path+',
      summary: 'Reads (optionally ?version=N), writes (with options.cas), patches or soft-deletes the latest version of a secret.',
      auditPlain: PLAIN,
      fields: { ...WRITE_FIELDS, version: { type: 'int', description: 'the version to read (0 = latest)', min: 0 } },
      exists,
      operations: {
        read: readData,
        update: (ctx) => writeData(ctx, false),
        patch: (ctx) => writeData(ctx, true),
        delete: async (ctx) => { await kv.softDelete(secretKey(ctx), null); },
      },
    },
    {
      pattern: 'delete/:path+',
      summary: 'Soft-deletes the given versions (undo with undelete).',
      auditPlain: PLAIN,
      fields: VERSIONS,
      operations: { update: async (ctx) => { await kv.softDelete(secretKey(ctx), requireVersions(ctx)); } },
    },
    {
      pattern: 'undelete/:path+',
      summary: 'Restores soft-deleted versions.',
      auditPlain: PLAIN,
      fields: VERSIONS,
      operations: { update: async (ctx) => { await kv.undelete(secretKey(ctx), requireVersions(ctx)); } },
    },
    {
      pattern: 'destroy/:path+',
      summary: 'Permanently removes the data of the given versions.',
      auditPlain: PLAIN,
      fields: VERSIONS,
      operations: { update: async (ctx) => { await kv.destroy(secretKey(ctx), requireVersions(ctx)); } },
    },
    {
      pattern: 'metadata/:path*',
      summary: 'Lists keys under a folder; reads, writes, patches or deletes (with every version) the metadata of a secret.',
      auditPlain: PLAIN,
      fields: METADATA_FIELDS,
      exists,
      operations: {
        list: async ({ params }) => {
          const prefix = params.path ?? '';
          const keys = await kv.list(prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`);
          // Vault: an empty listing is a 404 with no error messages.
          if (keys.length === 0) return { status: 404, bare: { errors: [] } };
          return { data: { keys } };
        },
        read: async (ctx) => {
          const meta = await kv.metadata(secretKey(ctx));
          if (!meta) throw new NotFoundError(`no secret at ${ctx.params.path}`);
          return { data: metadataView(meta) };
        },
        update: async (ctx) => { await kv.updateMetadata(secretKey(ctx), (m) => applyMetadataFields(m, ctx.fields)); },
        patch: async (ctx) => {
          const key = secretKey(ctx);
          if (!(await kv.metadata(key))) throw new NotFoundError(`no secret at ${key}`);
          await kv.updateMetadata(key, (m) => {
            const { custom_metadata, ...rest } = ctx.fields;
            applyMetadataFields(m, rest);
            if (custom_metadata !== undefined) m.custom_metadata = validateCustomMetadata(mergePatch(m.custom_metadata ?? {}, custom_metadata));
          });
        },
        delete: async (ctx) => { await kv.deleteAll(secretKey(ctx)); },
      },
    },
    {
      pattern: 'subkeys/:path+',
      summary: "A secret's keys without its values (every leaf null), to ?depth levels.",
      auditPlain: [...PLAIN, 'subkeys'],
      fields: { version: { type: 'int', description: 'the version (0 = latest)', min: 0 }, depth: { type: 'int', description: 'levels to show (0 = all)', min: 0, default: 0 } },
      operations: {
        read: async (ctx) => {
          const r = await kv.read(secretKey(ctx), (ctx.fields.version as number | undefined) ?? 0);
          if (r.data === null) return { status: 404, data: { subkeys: null, metadata: versionView(r.meta, r.version) } };
          return { data: { subkeys: subkeys(r.data, ctx.fields.depth as number), metadata: versionView(r.meta, r.version) } };
        },
      },
    },
  ];
}

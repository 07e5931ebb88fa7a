import { BadRequestError } from '../../core/errors.js';
import { formatDuration } from '../../core/duration.js';

export interface VersionMeta {
  created_time: string;
  /** '' while live; the time it was (or will be) soft-deleted otherwise. */
  deletion_time: string;
  destroyed: boolean;
}

export interface KeyMetadata {
  created_time: string;
  updated_time: string;
  current_version: number;
  oldest_version: number;
  /** 0 = the mount's setting. */
  max_versions: number;
  cas_required: boolean;
  /** Seconds; 0 = the mount's setting. */
  delete_version_after: number;
  custom_metadata: Record<string, string> | null;
  versions: Record<string, VersionMeta>;
}

export interface KvConfig {
  max_versions: number;
  cas_required: boolean;
  delete_version_after: number;
}

export const DEFAULT_MAX_VERSIONS = 10;
export const DEFAULT_CONFIG: KvConfig = { max_versions: 0, cas_required: false, delete_version_after: 0 };

export function newMetadata(now: string): KeyMetadata {
  return {
    created_time: now, updated_time: now, current_version: 0, oldest_version: 0, max_versions: 0,
    cas_required: false, delete_version_after: 0, custom_metadata: null, versions: {},
  };
}

export function isDeleted(v: VersionMeta, now = Date.now()): boolean {
  return v.deletion_time !== '' && Date.parse(v.deletion_time) <= now;
}

export function effectiveMaxVersions(meta: KeyMetadata, cfg: KvConfig): number {
  return meta.max_versions || cfg.max_versions || DEFAULT_MAX_VERSIONS;
}

/** The shorter of the key's and the mount's delete_version_after, 0 when neither is set (Vault's rule). */
export function effectiveDeleteAfter(meta: KeyMetadata, cfg: KvConfig): number {
  const set = [meta.delete_version_after, cfg.delete_version_after].filter((s) => s > 0);
  return set.length ? Math.min(...set) : 0;
}

export function validateCustomMetadata(value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadRequestError('custom_metadata must be an object of strings');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 64) throw new BadRequestError('custom_metadata: at most 64 keys');
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw new BadRequestError(`custom_metadata.${k}: values must be strings`);
    if (k.length === 0 || Buffer.byteLength(k) > 128) throw new BadRequestError('custom_metadata: keys must be 1 to 128 bytes');
    if (Buffer.byteLength(v) > 512) throw new BadRequestError(`custom_metadata.${k}: values must be at most 512 bytes`);
  }
  return value as Record<string, string>;
}

export function versionView(meta: KeyMetadata, version: number): Record<string, unknown> {
  const v = meta.versions[String(version)]!;
  return { created_time: v.created_time, custom_metadata: meta.custom_metadata, deletion_time: v.deletion_time, destroyed: v.destroyed, version };
}

export function metadataView(meta: KeyMetadata): Record<string, unknown> {
  return {
    cas_required: meta.cas_required,
    created_time: meta.created_time,
    current_version: meta.current_version,
    custom_metadata: meta.custom_metadata,
    delete_version_after: formatDuration(meta.delete_version_after),
    max_versions: meta.max_versions,
    oldest_version: meta.oldest_version,
    updated_time: meta.updated_time,
    versions: meta.versions,
  };
}

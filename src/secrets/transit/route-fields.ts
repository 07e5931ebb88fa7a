import { BadRequestError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';

// Field declarations shared by several transit routes.

/** Vault declares the path's key name as a field too, and clients (node-vault) send it in the body: accepted, unused. */
export const NAME_FIELD: FieldSpecs = { name: { type: 'string', description: 'the key name (the one in the path is used)' } };

export const CONTEXT_FIELD: FieldSpecs = {
  context: { type: 'string', description: 'base64 context for key derivation (required by derived keys)' },
};

export const KEY_VERSION_FIELD: FieldSpecs = {
  key_version: { type: 'int', description: 'the key version to use (0 or absent = the latest)', min: 0 },
};

/** Vault refuses auto-rotation periods under an hour (0 turns it off). */
export function autoRotatePeriod(seconds: number | undefined): number | undefined {
  if (seconds === undefined) return undefined;
  if (seconds !== 0 && seconds < 3600) throw new BadRequestError('auto rotate period must be 0 to disable or at least an hour');
  return seconds;
}

/** Fields of a key's settings that are not secret (logged in clear by audit): everything a key read returns. */
export const KEY_PLAIN = [
  'name', 'type', 'derived', 'exportable', 'deletion_allowed', 'allow_plaintext_backup', 'imported_key', 'latest_version',
  'min_available_version', 'min_decryption_version', 'min_encryption_version', 'auto_rotate_period', 'supports_encryption',
  'supports_decryption', 'supports_signing', 'supports_derivation', 'key_size', 'kdf', 'convergent_encryption', 'keys',
] as const;

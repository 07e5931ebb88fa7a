import { BadRequestError } from '../../core/errors.js';

// Transit speaks base64 both ways. Node's decoder skips characters it does not know, so "plain text" would quietly
// become bytes; Go's strict decoder (what Vault clients are used to) refuses it. Validate first, then decode.
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL_RAW = /^[A-Za-z0-9_-]*$/;

/** Strict standard base64 (with padding), like Go's base64.StdEncoding; `what` names the field in the error. */
export function decodeBase64(value: string, what: string): Buffer {
  if (!BASE64.test(value)) throw new BadRequestError(`failed to base64-decode ${what}: illegal base64 data (send standard base64 with padding)`);
  return Buffer.from(value, 'base64');
}

/** Unpadded URL-safe base64 (JWS signatures). */
export function decodeBase64UrlRaw(value: string, what: string): Buffer {
  if (!BASE64URL_RAW.test(value) || value.length % 4 === 1) throw new BadRequestError(`failed to base64url-decode ${what}: illegal base64url data`);
  return Buffer.from(value, 'base64url');
}

/** Vault's version prefix: `vault:v3:`. */
export function versionPrefix(version: number): string {
  return `vault:v${version}:`;
}

export interface Versioned {
  version: number;
  /** What follows the prefix, still encoded. */
  body: string;
}

/**
 * Splits `vault:vN:<body>`. `what` is Vault's word for the value ("ciphertext", "signature", "HMAC"), so the
 * messages are Vault's own ("invalid ciphertext: no prefix") and clients that match on them keep working.
 */
export function parseVersioned(value: string, what: string): Versioned {
  if (!value.startsWith('vault:v')) throw new BadRequestError(`invalid ${what}: no prefix`);
  const rest = value.slice('vault:v'.length);
  const colon = rest.indexOf(':');
  if (colon === -1) throw new BadRequestError(`invalid ${what}: wrong number of fields`);
  const digits = rest.slice(0, colon);
  if (!/^\d{1,9}$/.test(digits)) throw new BadRequestError(`invalid ${what}: version number could not be decoded`);
  // Version 0 is Vault's compatibility spelling of version 1.
  return { version: Math.max(1, Number(digits)), body: rest.slice(colon + 1) };
}

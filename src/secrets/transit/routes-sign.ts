import { BadRequestError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { Route } from '../../core/request.js';
import { BATCH_FIELDS, batchItems, itemBase64, itemString, requiredString, runBatch, type Item } from './batch.js';
import { decodeBase64 } from './encoding.js';
import type { Keyring } from './keyring.js';
import { CONTEXT_FIELD, KEY_VERSION_FIELD, NAME_FIELD } from './route-fields.js';
import { hashAlgorithm, hmac, marshaling, sign, verify, verifyHmac, type SignOptions } from './signing.js';

// Audit: input, signatures and HMACs stay HMACed; the algorithm choices and the verdict are logged in clear.
const PLAIN = ['key_version', 'hash_algorithm', 'algorithm', 'marshaling_algorithm', 'prehashed', 'signature_algorithm', 'valid', 'partial_failure_response_code'];

const SIGN_FIELDS: FieldSpecs = {
  ...NAME_FIELD, ...CONTEXT_FIELD, ...BATCH_FIELDS,
  input: { type: 'string', description: 'base64 input' },
  hash_algorithm: { type: 'string', description: 'sha2-256 (default), sha2-224, sha2-384, sha2-512, sha3-224 … sha3-512 (ECDSA; Ed25519 ignores it)' },
  algorithm: { type: 'string', description: 'deprecated spelling of hash_algorithm' },
  prehashed: { type: 'bool', description: 'the input is already a hash (not supported: node:crypto signs whole messages)', default: false },
  marshaling_algorithm: { type: 'string', description: 'asn1 (default, DER) or jws (r‖s, base64url)', default: 'asn1' },
  signature_algorithm: { type: 'string', description: 'RSA padding in Vault; no RSA keys here, ignored' },
};

/** The hash algorithm: the path's, else the body's (hash_algorithm, or its deprecated name), else sha2-256. */
function hashName(params: Record<string, string>, f: Record<string, unknown>): string {
  const name = params.urlalgorithm || (f.hash_algorithm as string | undefined) || (f.algorithm as string | undefined) || 'sha2-256';
  hashAlgorithm(name);
  return name;
}

function signOptions(params: Record<string, string>, f: Record<string, unknown>, item: Item): SignOptions {
  return {
    hash: hashName(params, f), prehashed: f.prehashed as boolean, marshaling: marshaling(f.marshaling_algorithm as string),
    context: itemBase64(item, 'context'), keyVersion: f.key_version as number | undefined,
  };
}

const input = (item: Item, missing = 'missing input') => decodeBase64(requiredString(item, 'input', missing), 'input');

/** Vault's sign, verify and hmac paths (each with and without the algorithm in the path). */
export function signRoutes(keyring: Keyring): Route[] {
  const withAlgorithm = (base: string) => [base, `${base}/:urlalgorithm`];
  return [
    ...withAlgorithm('sign/:name').map((pattern): Route => ({
      pattern,
      summary: 'Signs base64 input with an ecdsa-p256 or ed25519 key; the signature comes back as vault:vN:<base64>.',
      auditPlain: PLAIN,
      fields: { ...SIGN_FIELDS, ...KEY_VERSION_FIELD },
      operations: {
        update: async ({ params, fields: f }) => {
          hashName(params, f);
          marshaling(f.marshaling_algorithm as string);
          const k = await keyring.require(params.name!);
          k.requireSigning('signing');
          k.useVersion(f.key_version as number | undefined, 'signing');
          // Vault signs an empty input when none is given.
          const req = batchItems(f, { input: f.input ?? '', context: f.context });
          return runBatch(req, f, (item) => sign(k, input(item), signOptions(params, f, item)));
        },
      },
    })),
    ...withAlgorithm('verify/:name').map((pattern): Route => ({
      pattern,
      summary: 'Verifies a signature (signature) or an HMAC (hmac) of base64 input made by the named key: {"valid": true|false}.',
      auditPlain: PLAIN,
      fields: {
        ...SIGN_FIELDS,
        signature: { type: 'string', description: 'the vault:vN:… signature to check' },
        hmac: { type: 'string', description: 'the vault:vN:… HMAC to check' },
      },
      operations: {
        update: async ({ params, fields: f }) => {
          const single: Item = { input: f.input ?? '', context: f.context };
          if (f.signature !== undefined) single.signature = f.signature;
          if (f.hmac !== undefined) single.hmac = f.hmac;
          const req = batchItems(f, single);
          const kind = verifyKind(req.items, req.batch);
          const name = hashName(params, f);
          const k = await keyring.require(params.name!);
          if (kind === 'hmac') {
            return runBatch(req, f, (item) => ({ valid: verifyHmac(k, input(item), requiredString(item, 'hmac', 'missing hmac'), name) }));
          }
          marshaling(f.marshaling_algorithm as string);
          k.requireSigning('verification');
          return runBatch(req, f, (item) => ({ valid: verify(k, input(item), requiredString(item, 'signature', 'missing signature'), signOptions(params, f, item)) }));
        },
      },
    })),
    ...withAlgorithm('hmac/:name').map((pattern): Route => ({
      pattern,
      summary: "HMAC of base64 input with the key version's HMAC key (any key type), as vault:vN:<base64>.",
      auditPlain: PLAIN,
      fields: { ...NAME_FIELD, ...KEY_VERSION_FIELD, ...BATCH_FIELDS, input: { type: 'string', description: 'base64 input' }, algorithm: { type: 'string', description: 'sha2-256 (default) … sha3-512' } },
      operations: {
        update: async ({ params, fields: f }) => {
          const algorithm = params.urlalgorithm || (f.algorithm as string | undefined) || 'sha2-256';
          hashAlgorithm(algorithm);
          const req = batchItems(f, { input: f.input });
          if (!req.batch && f.input === undefined) throw new BadRequestError('missing input for HMAC');
          const k = await keyring.require(params.name!);
          const version = k.useVersion(f.key_version as number | undefined, 'HMAC');
          return runBatch(req, f, (item) => ({ hmac: hmac(k, input(item, 'missing input for HMAC'), algorithm, version) }));
        },
      },
    })),
  ];
}

/** Vault's rules: every item checks a signature, or every item an HMAC. */
function verifyKind(items: Item[], batch: boolean): 'signature' | 'hmac' {
  const sig = items.some((i) => itemString(i, 'signature') !== undefined);
  const mac = items.some((i) => itemString(i, 'hmac') !== undefined);
  const missing = items.some((i) => i.signature === undefined && i.hmac === undefined);
  if (!batch && sig && mac) throw new BadRequestError("provide one of 'signature' or 'hmac'");
  if (!batch && !sig && !mac) throw new BadRequestError("neither a 'signature' nor an 'hmac' were given to verify");
  if (sig && mac) throw new BadRequestError("elements of batch_input must all provide 'signature' or all provide 'hmac'");
  if (missing && sig) throw new BadRequestError("some elements of batch_input are missing 'signature'");
  if (missing && mac) throw new BadRequestError("some elements of batch_input are missing 'hmac'");
  if (missing) throw new BadRequestError("no batch_input elements have 'signature' or 'hmac'");
  return sig ? 'signature' : 'hmac';
}

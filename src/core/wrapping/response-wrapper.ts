import type { TokenStore } from '../../auth/token/store.js';
import type { SecurityEvents } from '../../detect/events.js';
import type { Barrier } from '../barrier/index.js';
import { BadRequestError, TxnConflictError } from '../errors.js';
import type { Response, WrapInfo } from '../request.js';

// Response wrapping (Vault's cubbyhole response wrapping): the response is stored in the barrier under the HMAC of
// a fresh single-use token, and only that token goes back to the client. The one who unwraps it gets the
// response and the token dies. A second unwrap fails — and because that means someone else unwrapped first (the
// token was intercepted on its way), it is recorded as a security event, not just refused.

const RESPONSE = 'sys/wrapping/response/';
const USED = 'sys/wrapping/used/';
/** How long an unwrapped token is remembered, to tell "already unwrapped" from "never existed". */
const USED_KEEP_MS = 7 * 86400_000;
export const WRAPPING_POLICY = 'response-wrapping';
export const MAX_WRAP_TTL = 30 * 86400;

interface Wrapped {
  response: Pick<Response, 'data' | 'auth' | 'lease' | 'warnings'>;
  creationTime: number;
  creationPath: string;
  ttl: number;
  accessor: string;
}

interface UsedMark {
  unwrappedAt: number;
  creationPath: string;
  accessor: string;
}

export interface UnwrapMeta {
  clientIp: string;
}

export class ResponseWrapper {
  constructor(private readonly barrier: Barrier, private readonly tokens: TokenStore, private readonly events: SecurityEvents) {}

  /** Stores `res` behind a new single-use wrapping token; the client gets only `wrap_info`. */
  async wrap(res: Response, ttl: number, creationPath: string): Promise<Response> {
    if (ttl <= 0 || ttl > MAX_WRAP_TTL) throw new BadRequestError(`wrap TTL must be between 1s and ${MAX_WRAP_TTL}s (30 days)`);
    const { token, entry } = await this.tokens.create({
      policies: [WRAPPING_POLICY], parent: null, ttl, explicitMaxTtl: ttl, numUses: 1, renewable: false,
      displayName: 'response-wrapping', path: creationPath,
    });
    const hash = this.tokens.hash(token);
    const now = Date.now();
    const wrapped: Wrapped = {
      response: { data: res.data, auth: res.auth, lease: res.lease, warnings: res.warnings },
      creationTime: now, creationPath, ttl, accessor: entry.accessor,
    };
    try {
      await this.barrier.put(RESPONSE + hash, wrapped);
    } catch (err) {
      await this.tokens.revoke(hash).catch(() => undefined);
      throw err;
    }
    const info: WrapInfo = {
      token, accessor: entry.accessor, ttl, creation_time: new Date(now).toISOString(), creation_path: creationPath,
      ...(res.auth ? { wrapped_accessor: res.auth.accessor } : {}),
    };
    return { wrapInfo: info, warnings: res.warnings };
  }

  /** The wrapped response, once: the stored response and the token are deleted in the same step. */
  async unwrap(token: string, meta: UnwrapMeta): Promise<Response> {
    return { ...(await this.take(token, meta, 'unwrap')).response };
  }

  /** Removes a wrapped response for good (its token too) and returns it as stored. */
  private async take(token: string, meta: UnwrapMeta, what: string): Promise<Wrapped> {
    const { hash, stored, version } = await this.find(token, meta, what);
    try {
      await this.barrier.txn([
        { type: 'check', key: RESPONSE + hash, version },
        { type: 'delete', key: RESPONSE + hash },
        { type: 'put', key: USED + hash, value: { unwrappedAt: Date.now(), creationPath: stored.creationPath, accessor: stored.accessor } satisfies UsedMark },
      ]);
    } catch (err) {
      // Two unwraps raced: exactly one got here first; the other is a reuse.
      if (err instanceof TxnConflictError) return this.refuseReuse(hash, meta, what);
      throw err;
    }
    await this.tokens.revoke(hash);
    return stored;
  }

  /** What a wrapping token holds, without unwrapping it. */
  async lookup(token: string, meta: UnwrapMeta): Promise<Record<string, unknown>> {
    const { stored } = await this.find(token, meta, 'lookup');
    return { creation_ttl: stored.ttl, creation_time: new Date(stored.creationTime).toISOString(), creation_path: stored.creationPath };
  }

  /** Moves a wrapped response to a new token with the same TTL (the old token stops working). */
  async rewrap(token: string, meta: UnwrapMeta): Promise<Response> {
    const stored = await this.take(token, meta, 'rewrap');
    return this.wrap(stored.response, stored.ttl, stored.creationPath);
  }

  /** The token's wrapped response is dropped with it (expiry, revocation). */
  async dropFor(tokenHash: string): Promise<void> {
    await this.barrier.delete(RESPONSE + tokenHash);
  }

  /** Forgets unwrapped-token marks older than a week (bounded per call). */
  async sweep(limit = 1000): Promise<number> {
    let n = 0;
    const cutoff = Date.now() - USED_KEEP_MS;
    for (const k of (await this.barrier.list(USED)).slice(0, limit)) {
      const m = await this.barrier.getJson<UsedMark>(USED + k);
      if (m && m.value.unwrappedAt < cutoff) {
        await this.barrier.delete(USED + k);
        n++;
      }
    }
    return n;
  }

  private async find(token: string, meta: UnwrapMeta, what: string): Promise<{ hash: string; stored: Wrapped; version: number }> {
    if (!token || token.length > 512) throw new BadRequestError('wrapping token is required: send it as X-Vault-Token or as "token" in the body');
    const hash = this.tokens.hash(token);
    const found = await this.barrier.getJson<Wrapped>(RESPONSE + hash);
    if (!found) return this.refuseReuse(hash, meta, what);
    const live = await this.tokens.lookupHash(hash);
    if (!live || !live.entry.policies.includes(WRAPPING_POLICY)) {
      await this.dropFor(hash);
      throw new BadRequestError('wrapping token is not valid or does not exist (it has expired)');
    }
    return { hash, stored: found.value, version: found.version };
  }

  private async refuseReuse(hash: string, meta: UnwrapMeta, what: string): Promise<never> {
    const used = await this.barrier.getJson<UsedMark>(USED + hash);
    if (!used) throw new BadRequestError('wrapping token is not valid or does not exist');
    const at = new Date(used.value.unwrappedAt).toISOString();
    await this.events.record({
      type: 'wrapping_token_reuse', outcome: 'failure', subject: used.value.creationPath, client_ip: meta.clientIp,
      reason: `${what} of a wrapping token that was already unwrapped at ${at}`,
      details: { accessor: used.value.accessor, unwrapped_at: at },
    });
    throw new BadRequestError(
      `wrapping token was already unwrapped (at ${at}); if it was not you, someone intercepted it: treat what it wrapped (from ${used.value.creationPath}) as compromised`,
    );
  }
}

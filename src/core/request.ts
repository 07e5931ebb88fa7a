import type { X509Certificate } from 'node:crypto';
import type { SecureStore } from './barrier/index.js';
import type { FieldSpecs } from './fields.js';

/** What a client asks for; derived from the HTTP method (and `?list=true` / the LIST verb). */
export type Operation = 'read' | 'list' | 'create' | 'update' | 'patch' | 'delete';

/** What a policy grants (the Cedar actions of the Aegis schema). `patch` is authorized as `update`. */
export type Action = 'read' | 'create' | 'update' | 'delete' | 'list' | 'sudo';
export const ACTIONS: readonly Action[] = ['read', 'create', 'update', 'delete', 'list', 'sudo'];

export interface ClientInfo {
  address: string;
  /** The certificate the client presented in a mutual TLS handshake (not yet verified: authn decides), if any. */
  peerCertificate?: () => X509Certificate | null;
}

/** One API call, whatever the transport: the unit the pipeline authenticates, authorizes and audits. */
export interface Request {
  id: string;
  operation: Operation;
  /** Normalised, no leading slash; a trailing slash is kept (listing paths end with one). */
  path: string;
  data: Record<string, unknown>;
  token: string | null;
  client: ClientInfo;
  /** Requested response wrapping TTL in seconds (X-Vault-Wrap-TTL), when any. */
  wrapTTL?: number;
}

/** The authenticated caller, as the pipeline resolved it from the token. */
export interface Caller {
  /** HMAC of the token: the storage identity of the token, never the token itself. */
  tokenHash: string;
  accessor: string;
  policies: string[];
  displayName: string;
  meta: Record<string, string>;
  orphan: boolean;
  /** The token's own ID, only for handlers that must return or revoke it (e.g. revoke-self). */
  token: string;
  expireTime: number | null;
  entityId: string;
}

export interface AuthResult {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  metadata: Record<string, string> | null;
  lease_duration: number;
  renewable: boolean;
  entity_id: string;
  token_type: 'service';
  orphan: boolean;
  num_uses: number;
}

export interface Response {
  /** Defaults to 200 with a body, 204 without one. */
  status?: number;
  data?: Record<string, unknown> | null;
  auth?: AuthResult;
  warnings?: string[];
  /** A body that is not Vault's JSON envelope (Prometheus text, raw JSON like health). */
  raw?: { contentType: string; body: string | Buffer };
  /** Response with these top-level fields verbatim instead of the envelope (sys/health, sys/init, seal-status). */
  bare?: Record<string, unknown>;
  /**
   * Names exactly what `data`'s fields hold (e.g. a storage key at its storage version, which no write can change
   * without changing the version), so an audit device may reuse its HMACs of them. Set it only when each field of
   * `data` is a pure function of this name.
   */
  auditDataId?: string;
  headers?: Record<string, string>;
  /** A secret with a lifetime (dynamic credentials): the pipeline gives it a lease and fills in lease_id. */
  secret?: LeasedSecret;
  /** Set by the pipeline once `secret` has a lease. */
  lease?: { id: string; duration: number; renewable: boolean };
  /**
   * A Server-Sent Events stream: each string is sent as one `data:` event, null as a keep-alive comment. The
   * signal aborts when the client goes away. The pipeline audits the response when the stream starts.
   */
  events?: (signal: AbortSignal) => AsyncIterable<string | null>;
  /** Set when the response was wrapped: the client gets this instead of the data. */
  wrapInfo?: WrapInfo;
}

/** Vault's `wrap_info`. */
export interface WrapInfo {
  token: string;
  accessor: string;
  ttl: number;
  creation_time: string;
  creation_path: string;
  wrapped_accessor?: string;
}

/** What an engine returns for a secret that must be revoked later (Vault's logical.Secret). */
export interface LeasedSecret {
  /** The key in the backend's `secretTypes` that renews and revokes it. */
  type: string;
  /** Seconds until it expires (capped by the lease manager at the system max). */
  ttl: number;
  /** Seconds from issue beyond which renewal cannot go (0 = the system max). */
  maxTtl: number;
  renewable: boolean;
  /** What revocation needs (e.g. the database user name). Kept with the lease in the barrier, never returned. */
  internal: Record<string, unknown>;
}

/** What a secret type's renew and revoke handlers get. */
export interface SecretContext {
  leaseId: string;
  internal: Record<string, unknown>;
  /** The mount's private storage. */
  store: SecureStore;
  mountPath: string;
  /** Unix ms. */
  issueTime: number;
  /** Unix ms: the lease's expiry (for renew: the new expiry the manager granted, already capped). */
  expireTime: number;
}

/** How an engine renews and revokes one kind of leased secret. */
export interface SecretType {
  /** Extends the secret where it lives (e.g. PostgreSQL `VALID UNTIL`). Without it, the secret is not renewable. */
  renew?(ctx: SecretContext): Promise<void>;
  /** Destroys the secret where it lives; must succeed if it is already gone (it is retried after failures). */
  revoke(ctx: SecretContext): Promise<void>;
}

export interface HandlerContext {
  req: Request;
  /** Named segments of the route pattern. */
  params: Record<string, string>;
  /** Validated, typed fields (see the route's `fields`). */
  fields: Record<string, unknown>;
  /** The mount's private storage. */
  store: SecureStore;
  /** The path under the mount. */
  relPath: string;
  mountPath: string;
  caller: Caller | null;
}

export type Handler = (ctx: HandlerContext) => Promise<Response | void>;

export interface Route {
  /** Relative to the mount: literal segments, `:name` (one segment), `:name*` (the rest, may be empty), `:name+` (the rest, non-empty). */
  pattern: string;
  summary: string;
  fields?: FieldSpecs;
  operations: Partial<Record<Operation, Handler>>;
  /** Also needs the `sudo` action (Vault's root-protected paths). */
  sudo?: boolean;
  /** Answers without a token and without audit; only seal/health endpoints may set this. */
  unauthenticated?: boolean;
  /**
   * Needs no token: the credential is in the request itself (attestation, Vault's `login` paths) or the data is
   * public by nature (trust bundles, CRLs, JWKS). Still audited, request and response, and refused while sealed.
   */
  login?: boolean;
  /** Decides create vs update for writes (Vault's ExistenceCheck). Without it a write is `update`. */
  exists?: (ctx: HandlerContext) => Promise<boolean>;
  /** Request/response fields logged in clear by audit; every other string value is HMACed. */
  auditPlain?: readonly string[];
  /** Accept fields not declared (they reach the handler in `ctx.req.data`). */
  openFields?: boolean;
}

/** A secrets engine or auth method: a route table over its own storage, mounted at a path. */
export interface Backend {
  readonly type: string;
  readonly routes: readonly Route[];
  /** Called after unseal (or when mounted); may load state into memory. */
  setup?(): Promise<void>;
  /** Called before seal or unmount. */
  teardown?(): Promise<void> | void;
  /** The kinds of leased secret this backend returns (see `Response.secret`), by name. */
  readonly secretTypes?: Readonly<Record<string, SecretType>>;
}

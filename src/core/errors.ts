// Every error a client can see is one of these classes: a stable code, the HTTP status decided here and
// nowhere else, and a message that says what was wrong and, where it helps, what to do.

export type ErrorCode =
  | 'ERR_BAD_REQUEST'
  | 'ERR_INVALID_PATH'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_PERMISSION_DENIED'
  | 'ERR_NOT_FOUND'
  | 'ERR_UNSUPPORTED_OPERATION'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_CONFLICT'
  | 'ERR_RATE_LIMITED'
  | 'ERR_SEALED'
  | 'ERR_NOT_INITIALIZED'
  | 'ERR_AUDIT_FAILED'
  | 'ERR_UPSTREAM'
  | 'ERR_INTERNAL';

const STATUS: Record<ErrorCode, number> = {
  ERR_BAD_REQUEST: 400,
  ERR_INVALID_PATH: 400,
  ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  ERR_PERMISSION_DENIED: 403,
  ERR_NOT_FOUND: 404,
  ERR_UNSUPPORTED_OPERATION: 405,
  ERR_PAYLOAD_TOO_LARGE: 413,
  ERR_CONFLICT: 409,
  ERR_RATE_LIMITED: 429,
  ERR_SEALED: 503,
  ERR_NOT_INITIALIZED: 503,
  ERR_AUDIT_FAILED: 503,
  ERR_UPSTREAM: 502,
  ERR_INTERNAL: 500,
};

export class AegisError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = STATUS[code];
  }
}

export class BadRequestError extends AegisError {
  constructor(message: string) { super('ERR_BAD_REQUEST', message); }
}
export class InvalidPathError extends AegisError {
  constructor(message: string) { super('ERR_INVALID_PATH', message); }
}
export class UnsupportedMediaTypeError extends AegisError {
  constructor(message: string) { super('ERR_UNSUPPORTED_MEDIA_TYPE', message); }
}
export class PermissionDeniedError extends AegisError {
  constructor(message = 'permission denied') { super('ERR_PERMISSION_DENIED', message); }
}
export class NotFoundError extends AegisError {
  constructor(message: string) { super('ERR_NOT_FOUND', message); }
}
export class UnsupportedOperationError extends AegisError {
  constructor(message: string) { super('ERR_UNSUPPORTED_OPERATION', message); }
}
export class PayloadTooLargeError extends AegisError {
  constructor(message: string) { super('ERR_PAYLOAD_TOO_LARGE', message); }
}
export class ConflictError extends AegisError {
  constructor(message: string) { super('ERR_CONFLICT', message); }
}
export class RateLimitedError extends AegisError {
  constructor(message = 'rate limit exceeded: slow down and retry later') { super('ERR_RATE_LIMITED', message); }
}
export class SealedError extends AegisError {
  constructor() { super('ERR_SEALED', 'Aegis is sealed'); }
}
export class NotInitializedError extends AegisError {
  constructor() { super('ERR_NOT_INITIALIZED', 'Aegis is not initialized: run `aegis operator init`'); }
}
export class AuditFailedError extends AegisError {
  constructor() {
    super('ERR_AUDIT_FAILED', 'no audit device could record the request, so it was refused (audit fails closed); check the audit devices');
  }
}

/** A system Aegis manages for the caller (a database) could not be reached or refused Aegis's own credentials. */
export class UpstreamError extends AegisError {
  constructor(message: string) { super('ERR_UPSTREAM', message); }
}

/** A storage transaction's check did not hold: someone else wrote the key first. */
export class TxnConflictError extends Error {
  constructor(readonly key: string) {
    super(`transaction check failed on ${key}`);
    this.name = 'TxnConflictError';
  }
}

/** Maps anything thrown to what a client may see: unknown errors never leak their message. */
export function toClientError(err: unknown): AegisError {
  if (err instanceof AegisError) return err;
  return new AegisError('ERR_INTERNAL', 'internal error');
}

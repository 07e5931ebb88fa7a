import type { ChainState } from './chain.js';

/** A write that failed after `written` bytes of the data had gone out (0 when nothing did). */
export class SinkWriteError extends Error {
  constructor(message: string, readonly written: number) {
    super(message);
    this.name = 'SinkWriteError';
  }
}

/** Where audit lines go. Writes are synchronous so a failure is known before the request goes on (fail closed). */
export interface AuditSink {
  readonly type: string;
  /** The chain position to continue from (the last intact line of an existing file). */
  readonly resume: ChainState;
  /** Writes complete lines (one or a batch); throws SinkWriteError saying how many bytes went out when it cannot. */
  write(data: Buffer): void;
  /** Reopens the destination (after log rotation: SIGHUP). */
  reopen(): void;
  close(): void;
  options(): Record<string, string>;
}

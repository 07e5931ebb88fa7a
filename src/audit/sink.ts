import type { ChainState } from './chain.js';

/** Where audit lines go. Writes are synchronous so a failure is known before the request goes on (fail closed). */
export interface AuditSink {
  readonly type: string;
  /** The chain position to continue from (the last intact line of an existing file). */
  readonly resume: ChainState;
  /** Writes one complete line; throws when it cannot. */
  write(line: string): void;
  /** Reopens the destination (after log rotation: SIGHUP). */
  reopen(): void;
  close(): void;
  options(): Record<string, string>;
}

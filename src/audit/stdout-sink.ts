import { writeSync } from 'node:fs';
import { GENESIS, type ChainState } from './chain.js';
import { SinkWriteError, type AuditSink } from './sink.js';

/** Writes audit lines to the server's standard output (for containers that ship stdout). */
export class StdoutSink implements AuditSink {
  readonly type = 'stdout';
  readonly resume: ChainState = { seq: 0, hash: GENESIS };

  write(data: Buffer): void {
    let off = 0;
    for (let tries = 0; off < data.length; tries++) {
      try {
        off += writeSync(1, data, off);
      } catch (err) {
        // stdout may be a non-blocking pipe: retry a full pipe briefly, then report the failure.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || tries > 1000) throw new SinkWriteError(`stdout: ${(err as Error).message}`, off);
      }
    }
  }

  reopen(): void {}
  close(): void {}
  options(): Record<string, string> {
    return {};
  }
}

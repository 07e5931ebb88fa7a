import { writeSync } from 'node:fs';
import { GENESIS, type ChainState } from './chain.js';
import type { AuditSink } from './sink.js';

/** Writes audit lines to the server's standard output (for containers that ship stdout). */
export class StdoutSink implements AuditSink {
  readonly type = 'stdout';
  readonly resume: ChainState = { seq: 0, hash: GENESIS };

  write(line: string): void {
    const buf = Buffer.from(line);
    let off = 0;
    for (let tries = 0; off < buf.length; tries++) {
      try {
        off += writeSync(1, buf, off);
      } catch (err) {
        // stdout may be a non-blocking pipe: retry a full pipe briefly, then report the failure.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || tries > 1000) throw err;
      }
    }
  }

  reopen(): void {}
  close(): void {}
  options(): Record<string, string> {
    return {};
  }
}

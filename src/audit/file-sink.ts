import { closeSync, fchmodSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { BadRequestError } from '../core/errors.js';
import { GENESIS, parseLine, type ChainState } from './chain.js';
import { SinkWriteError, type AuditSink } from './sink.js';

/** Appends JSON lines to a file (mode 0600). An existing file is continued: its last intact line anchors the chain. */
export class FileSink implements AuditSink {
  readonly type = 'file';
  readonly resume: ChainState;
  private fd: number;
  /** The last write stopped mid-line. */
  private torn = false;

  constructor(readonly path: string, private readonly mode = 0o600) {
    if (!isAbsolute(path)) throw new BadRequestError(`audit file_path must be absolute: ${path}`);
    try {
      this.fd = openSync(path, 'a+', mode);
      // An existing file keeps the mode it had; the log holds HMACs and metadata, so tighten it to ours
      // (regular files only: never change the mode of a device or pipe).
      if (fstatSync(this.fd).isFile()) fchmodSync(this.fd, mode);
    } catch (err) {
      throw new BadRequestError(`audit file ${path} cannot be opened for appending: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const tail = lastLine(this.fd);
    this.resume = tail.state;
    // A crash mid-write can leave a partial last line; end it so the next entry starts on its own line.
    if (!tail.endsWithNewline) writeSync(this.fd, '\n');
  }

  write(data: Buffer): void {
    // writeSync can write part of the data without throwing (disk full, file size limit): keep going until all of
    // it is out or a write fails, and say how much went out. After a torn write the next batch starts on a new line.
    if (this.torn) {
      try {
        writeAll(this.fd, Buffer.from('\n'), this.path);
      } catch (err) {
        throw new SinkWriteError(`audit file ${this.path}: ${(err as Error).message}`, 0);
      }
      this.torn = false;
    }
    try {
      writeAll(this.fd, data, this.path);
    } catch (err) {
      const written = (err as { written?: number }).written ?? 0;
      if (written > 0) this.torn = data[written - 1] !== 0x0a;
      throw new SinkWriteError(`audit file ${this.path}: ${(err as Error).message}`, written);
    }
  }

  reopen(): void {
    const fd = openSync(this.path, 'a', this.mode);
    closeSync(this.fd);
    this.fd = fd;
  }

  close(): void {
    try { closeSync(this.fd); } catch { /* already closed */ }
  }

  options(): Record<string, string> {
    return { file_path: this.path, mode: this.mode.toString(8).padStart(4, '0') };
  }
}

/** Writes all of `buf` or throws an error carrying `written`. */
function writeAll(fd: number, buf: Buffer, path: string): number {
  let off = 0;
  try {
    while (off < buf.length) {
      const n = writeSync(fd, buf, off);
      if (n <= 0) throw new Error(`audit file ${path}: write made no progress`);
      off += n;
    }
  } catch (err) {
    throw Object.assign(err as Error, { written: off });
  }
  return off;
}

function lastLine(fd: number): { state: ChainState; endsWithNewline: boolean } {
  const size = fstatSync(fd).size;
  if (size === 0) return { state: { seq: 0, hash: GENESIS }, endsWithNewline: true };
  let chunk = 64 * 1024;
  for (;;) {
    const start = Math.max(0, size - chunk);
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    const text = buf.toString('utf8');
    const lines = text.split('\n');
    const endsWithNewline = text.endsWith('\n');
    if (endsWithNewline) lines.pop();
    // Whole lines only: the first piece may be cut unless we read from the start of the file.
    for (let i = lines.length - 1; i >= (start === 0 ? 0 : 1); i--) {
      const p = parseLine(lines[i]!);
      if (p) return { state: { seq: p.seq, hash: p.hash }, endsWithNewline };
    }
    if (start === 0) return { state: { seq: 0, hash: GENESIS }, endsWithNewline };
    chunk *= 4;
  }
}

import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

// Vault's documentation lists with `curl --request LIST`, but Node's HTTP parser accepts only its fixed method
// table and answers LIST with 400 before any handler runs. So each connection passes through this framer, which
// follows request boundaries (head, then Content-Length bytes of body) and rewrites a request line
// `LIST /v1/x HTTP/1.1` to `GET /v1/x?list=true HTTP/1.1`. It never adds or drops bytes elsewhere; anything it
// cannot frame with certainty (chunked bodies, upgrades, oversized heads) switches the connection to plain
// pass-through, where LIST is simply refused by the parser as before.

const MAX_HEAD = 64 * 1024;
const CRLF2 = Buffer.from('\r\n\r\n');
const LIST = Buffer.from('LIST ');

export class ListVerbFramer {
  private pending: Buffer | null = null;
  private bodyLeft = 0;
  private passthrough = false;

  /** Transforms one chunk of the inbound byte stream. */
  push(chunk: Buffer): Buffer {
    if (this.passthrough) return chunk;
    const out: Buffer[] = [];
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    while (buf.length > 0) {
      if (this.passthrough) {
        out.push(buf);
        break;
      }
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, buf.length);
        out.push(buf.subarray(0, n));
        this.bodyLeft -= n;
        buf = buf.subarray(n);
        continue;
      }
      // Tolerate the blank lines a client may send between requests (RFC 9112 §2.2).
      let skip = 0;
      while (skip < buf.length && (buf[skip] === 0x0d || buf[skip] === 0x0a)) skip++;
      if (skip > 0) {
        out.push(buf.subarray(0, skip));
        buf = buf.subarray(skip);
        continue;
      }
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        // A line ending in a bare LF is not HTTP/1.1 as Node parses it: hand everything to the parser, which
        // refuses it at once (holding it here would only delay the refusal).
        if (buf.length > MAX_HEAD || hasBareLf(buf)) {
          this.passthrough = true;
          out.push(buf);
        } else {
          this.pending = buf;
        }
        break;
      }
      const headLen = end + 4;
      out.push(this.head(buf.subarray(0, headLen)));
      buf = buf.subarray(headLen);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Bytes of an incomplete request head are being held back (the HTTP parser has not seen them yet). */
  get holding(): boolean {
    return this.pending !== null;
  }

  private head(head: Buffer): Buffer {
    const text = head.toString('latin1');
    const te = /\r\ntransfer-encoding\s*:/i.test(text);
    const upgrade = /\r\nupgrade\s*:/i.test(text) || text.startsWith('CONNECT ');
    const cl = /\r\ncontent-length\s*:\s*(\d+)\s*\r\n/i.exec(text);
    if (te || upgrade) this.passthrough = true;
    else this.bodyLeft = cl ? Number(cl[1]) : 0;
    if (!head.subarray(0, LIST.length).equals(LIST)) return head;
    const lineEnd = text.indexOf('\r\n');
    const m = /^LIST (\S+) (HTTP\/1\.[01])$/.exec(text.slice(0, lineEnd));
    if (!m) return head;
    const target = m[1]!.includes('?') ? `${m[1]}&list=true` : `${m[1]}?list=true`;
    return Buffer.concat([Buffer.from(`GET ${target} ${m[2]}`, 'latin1'), head.subarray(lineEnd)]);
  }
}

/**
 * The connection the HTTP server sees: the real (TLS) socket's bytes through the framer, writes straight back.
 * Node's HTTP server accepts any Duplex injected with `emit('connection')`.
 */
function hasBareLf(buf: Buffer): boolean {
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) if (i === 0 || buf[i - 1] !== 0x0d) return true;
  return false;
}

export class FramedConnection extends Duplex {
  private readonly framer = new ListVerbFramer();
  private holdTimer: NodeJS.Timeout | null = null;

  /**
   * `headersTimeoutMs` bounds how long an incomplete head may be held back: the parser's own header timeout cannot
   * start before it sees the bytes, so without this a client trickling a head forever would hold the connection.
   */
  constructor(readonly socket: Socket | TLSSocket, private readonly headersTimeoutMs = 10_000) {
    super({ allowHalfOpen: false });
    socket.on('data', (chunk: Buffer) => {
      const out = this.framer.push(chunk);
      this.watchHolding();
      if (out.length > 0 && !this.push(out)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('close', () => {
      this.clearHold();
      this.destroy();
    });
    socket.on('error', (err) => this.destroy(err));
    socket.on('timeout', () => this.emit('timeout'));
  }

  get remoteAddress() { return this.socket.remoteAddress; }
  get remotePort() { return this.socket.remotePort; }
  get remoteFamily() { return this.socket.remoteFamily; }
  get localAddress() { return this.socket.localAddress; }
  get localPort() { return this.socket.localPort; }
  get encrypted(): boolean { return (this.socket as TLSSocket).encrypted === true; }
  get bytesWritten() { return this.socket.bytesWritten; }

  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout(ms);
    if (cb) this.once('timeout', cb);
    return this;
  }
  setNoDelay(noDelay?: boolean): this { this.socket.setNoDelay(noDelay); return this; }
  setKeepAlive(enable?: boolean, delay?: number): this { this.socket.setKeepAlive(enable, delay); return this; }
  ref(): this { this.socket.ref(); return this; }
  unref(): this { this.socket.unref(); return this; }
  destroySoon(): void { this.end(); }

  private watchHolding(): void {
    if (!this.framer.holding) return this.clearHold();
    if (this.holdTimer) return;
    this.holdTimer = setTimeout(() => {
      const body = JSON.stringify({ errors: ['request timed out: the request head was not completed in time'] });
      this.socket.end(`HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      this.socket.destroySoon?.();
    }, this.headersTimeoutMs);
    this.holdTimer.unref();
  }

  private clearHold(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.socket.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.socket.write(chunks[i]!.chunk);
    this.socket.write(chunks[chunks.length - 1]!.chunk, cb);
    this.socket.uncork();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }
}

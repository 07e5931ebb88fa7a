import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ListVerbFramer } from '../../src/server/list-verb.js';

// The framer sits below Node's HTTP parser: whatever it gets, the bytes it gives must be exactly the input with
// each `LIST <target>` request line (and only request lines) turned into `GET <target>?list=true`.

function run(chunks: Buffer[]): string {
  const f = new ListVerbFramer();
  return Buffer.concat(chunks.map((c) => f.push(c))).toString('latin1');
}

const bytes = (s: string) => Buffer.from(s, 'latin1');

const POST_BODY = 'LIST /v1/secret/metadata/ HTTP/1.1\r\n\r\n';
const PIPELINED = [
  'LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: a\r\n\r\n',
  `POST /v1/secret/data/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${POST_BODY.length}\r\nContent-Type: application/json\r\n\r\n${POST_BODY}`,
  'LIST /v1/secret/metadata/app?foo=1 HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /v1/sys/health HTTP/1.1\r\nHost: a\r\n\r\n',
  'LIST /v1/secret/metadata/ HTTP/1.0\r\n\r\n',
].join('');
const PIPELINED_EXPECTED = [
  'GET /v1/secret/metadata/?list=true HTTP/1.1\r\nHost: a\r\n\r\n',
  `POST /v1/secret/data/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${POST_BODY.length}\r\nContent-Type: application/json\r\n\r\n${POST_BODY}`,
  'GET /v1/secret/metadata/app?foo=1&list=true HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /v1/sys/health HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET /v1/secret/metadata/?list=true HTTP/1.0\r\n\r\n',
].join('');

describe('ListVerbFramer', () => {
  it('rewrites every LIST request line of pipelined requests arriving in one chunk, and nothing else', () => {
    assert.equal(run([bytes(PIPELINED)]), PIPELINED_EXPECTED);
  });

  it('gives the same bytes when a pipelined stream is split into two chunks at every byte offset', () => {
    const input = bytes(PIPELINED);
    for (let i = 0; i <= input.length; i++) {
      assert.equal(run([input.subarray(0, i), input.subarray(i)]), PIPELINED_EXPECTED, `split at offset ${i}`);
    }
  });

  it('gives the same bytes when the stream arrives one byte at a time', () => {
    const input = bytes(PIPELINED);
    const chunks: Buffer[] = [];
    for (let i = 0; i < input.length; i++) chunks.push(input.subarray(i, i + 1));
    assert.equal(run(chunks), PIPELINED_EXPECTED);
  });

  it('gives the same bytes when split into three chunks at every pair of offsets around the body', () => {
    const input = bytes(PIPELINED);
    // Offsets around the second request (whose body looks like a LIST request) cover head/body/next-head seams.
    const start = PIPELINED.indexOf('POST');
    const stop = PIPELINED.indexOf('LIST /v1/secret/metadata/app');
    for (let i = start; i <= stop + 5; i++) {
      for (let j = i; j <= stop + 5; j += 3) {
        assert.equal(run([input.subarray(0, i), input.subarray(i, j), input.subarray(j)]), PIPELINED_EXPECTED, `split at ${i} and ${j}`);
      }
    }
  });

  it('never rewrites bytes "LIST /" inside a Content-Length body, even when the body is a whole LIST request', () => {
    const body = 'LIST /v1/sys/mounts HTTP/1.1\r\n\r\nLIST /v1/x HTTP/1.1\r\n\r\n';
    const req = `PUT /v1/secret/data/y HTTP/1.1\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    assert.equal(run([bytes(req)]), req);
    // The request after the body is still framed and rewritten.
    assert.equal(run([bytes(req + 'LIST /v1/z HTTP/1.1\r\n\r\n')]), `${req}GET /v1/z?list=true HTTP/1.1\r\n\r\n`);
  });

  it('tolerates blank lines between requests and still rewrites the next LIST', () => {
    assert.equal(run([bytes('\r\n\r\nLIST /v1/a HTTP/1.1\r\n\r\n')]), '\r\n\r\nGET /v1/a?list=true HTTP/1.1\r\n\r\n');
  });

  it('switches to pass-through after a chunked body, so later bytes (even LIST lines) are left alone', () => {
    const chunked = 'POST /v1/secret/data/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    const after = 'LIST /v1/secret/metadata/ HTTP/1.1\r\n\r\n';
    assert.equal(run([bytes(chunked + after)]), chunked + after);
    assert.equal(run([bytes(chunked), bytes(after)]), chunked + after);
  });

  it('switches to pass-through for upgrades and CONNECT', () => {
    const up = 'GET /v1/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nLIST /v1/a HTTP/1.1\r\n\r\n';
    assert.equal(run([bytes(up)]), up);
    const connect = 'CONNECT a:443 HTTP/1.1\r\n\r\nLIST /v1/a HTTP/1.1\r\n\r\n';
    assert.equal(run([bytes(connect)]), connect);
  });

  it('passes an oversized head through unchanged instead of buffering without bound', () => {
    const f = new ListVerbFramer();
    const huge = bytes(`LIST /v1/a HTTP/1.1\r\nX-Big: ${'a'.repeat(70 * 1024)}`);
    const out = f.push(huge);
    assert.equal(out.length, huge.length, 'the bytes are released, not held');
    assert.equal(out.toString('latin1'), huge.toString('latin1'));
    assert.equal(f.push(bytes('\r\n\r\nLIST /v1/b HTTP/1.1\r\n\r\n')).toString('latin1'), '\r\n\r\nLIST /v1/b HTTP/1.1\r\n\r\n');
  });

  it('holds back an incomplete head until it is complete, then releases it rewritten', () => {
    const f = new ListVerbFramer();
    assert.equal(f.push(bytes('LIST /v1/a HTTP/1.1\r\nHost: x\r\n')).length, 0);
    assert.equal(f.push(bytes('\r\n')).toString('latin1'), 'GET /v1/a?list=true HTTP/1.1\r\nHost: x\r\n\r\n');
  });

  it('leaves a request line it cannot parse exactly as it is', () => {
    const odd = 'LIST  /v1/a HTTP/1.1\r\n\r\n';
    assert.equal(run([bytes(odd)]), odd);
  });
});

// Small real-client tools for the HTTP-layer tests: raw node:http(s) requests (the path is sent exactly as given,
// unlike fetch, which normalizes `..`, `%2e%2e` and friends away before they reach the server), raw pipelined
// requests on one socket, and child processes (curl, openssl) run without blocking the in-process server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect } from 'node:net';

export interface RawResult {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  body: any;
}

export interface RawOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** CA file to trust (https only). */
  caFile?: string;
  agent?: HttpAgent | HttpsAgent | false;
  timeoutMs?: number;
}

/** One request with node:http(s); `path` (starting with /) goes on the request line untouched. */
export function rawRequest(address: string, path: string, o: RawOptions = {}): Promise<RawResult> {
  const url = new URL(address);
  const https = url.protocol === 'https:';
  const headers: Record<string, string | number> = { ...o.headers };
  if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)({
      host: url.hostname, port: url.port, method: o.method ?? 'GET', path, headers, agent: o.agent ?? false,
      ...(https && o.caFile ? { ca: readFileSync(o.caFile) } : {}),
      timeout: o.timeoutMs ?? 10_000,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = null;
        try { body = text ? JSON.parse(text) : null; } catch { body = null; }
        resolve({ status: res.statusCode!, headers: res.headers, text, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${o.method ?? 'GET'} ${path.slice(0, 200)} in ${o.timeoutMs ?? 10_000}ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Asserts the API's error shape: the status, a JSON content type, and exactly `{"errors": [message]}`. */
export function assertApiError(res: { status: number; body: any; text: string; headers: IncomingHttpHeaders | Headers }, status: number, message?: RegExp): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  const ct = res.headers instanceof Headers ? res.headers.get('content-type') : res.headers['content-type'];
  assert.match(String(ct), /^application\/json/, 'errors are JSON');
  assert.ok(res.body && typeof res.body === 'object', `error body is JSON: ${res.text.slice(0, 300)}`);
  assert.deepEqual(Object.keys(res.body), ['errors'], `error body has only "errors": ${res.text.slice(0, 300)}`);
  assert.ok(Array.isArray(res.body.errors) && res.body.errors.length === 1 && typeof res.body.errors[0] === 'string', 'errors is a list of one message');
  if (message) assert.match(res.body.errors[0], message);
}

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes `payload` (one or more requests, pipelined) on one TCP connection in one write, reads until the server
 * closes (the last request should say `Connection: close`), and splits the answers by their Content-Length.
 */
export function pipelined(address: string, payload: string | Buffer, timeoutMs = 10_000): Promise<ParsedResponse[]> {
  const url = new URL(address);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`connection not closed within ${timeoutMs}ms`)), timeoutMs);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponses(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
  });
}

export function parseResponses(buf: Buffer): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let rest = buf;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) throw new Error(`incomplete response head: ${rest.toString('latin1').slice(0, 200)}`);
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    if (!m) throw new Error(`not a status line: ${lines[0]}`);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] ?? 0);
    const bodyStart = end + 4;
    if (rest.length < bodyStart + len) throw new Error('incomplete response body');
    out.push({ status: Number(m[1]), headers, body: rest.subarray(bodyStart, bodyStart + len).toString('utf8') });
    rest = rest.subarray(bodyStart + len);
  }
  return out;
}

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop (the server under test lives in this process). */
export function runProcess(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    proc.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    proc.stdin.end(opts.input ?? '');
  });
}

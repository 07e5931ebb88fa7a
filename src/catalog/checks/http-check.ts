import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { MAX_OUTPUT, type CheckStatus, type CheckTarget } from '../model.js';
import { critical, raceProbe, type ProbeResult } from './probe.js';

// Consul's HTTP check: 2xx passing, 429 Too Many Requests warning, anything else critical; the output names the
// request and the status line, then the start of the body.
export function httpStatus(code: number): CheckStatus {
  if (code >= 200 && code <= 299) return 'passing';
  if (code === 429) return 'warning';
  return 'critical';
}

/**
 * GETs (or `check.method`) `check.http`. Redirects are not followed (a 3xx is critical): the checker runs inside
 * the server, and a check must not be bounced to some other address. Each run uses its own connection (Consul
 * disables keep-alive too), so 10,000 checks do not leave 10,000 idle sockets behind. At most MAX_OUTPUT bytes
 * of the body are read.
 */
export function httpProbe(target: CheckTarget, signal: AbortSignal): Promise<ProbeResult> {
  const method = (target.check.method || 'GET').toUpperCase();
  const raw = target.check.http ?? '';
  const label = `HTTP ${method} ${raw}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return Promise.resolve(critical(`${label}: not a valid URL`));
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.resolve(critical(`${label}: unsupported scheme ${url.protocol} (use http: or https:)`));
  }
  return raceProbe(target, signal, label, (settle) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, {
      method,
      agent: false,
      headers: { 'user-agent': 'Aegis Health Check', accept: 'text/plain, text/*, */*' },
    });
    req.on('error', (err) => settle(critical(`${label}: ${err.message}`)));
    req.on('response', (res) => readResponse(res, label, settle));
    req.end();
    return () => req.destroy();
  });
}

function readResponse(res: IncomingMessage, label: string, settle: (r: ProbeResult) => void): void {
  const code = res.statusCode ?? 0;
  const chunks: Buffer[] = [];
  let size = 0;
  const done = (): void => {
    const body = new TextDecoder().decode(Buffer.concat(chunks));
    const line = `${code} ${res.statusMessage ?? ''}`.trimEnd();
    settle({ status: httpStatus(code), output: `${label}: ${line} Output: ${body}` });
  };
  res.on('data', (chunk: Buffer) => {
    const room = MAX_OUTPUT - size;
    if (room > 0) chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
    size += Math.min(room, chunk.length);
    // Enough to show: stop reading (settle destroys the connection).
    if (size >= MAX_OUTPUT) done();
  });
  res.on('end', done);
  // The status is known; a body cut short still reports it, with what arrived.
  res.on('error', done);
  res.on('close', done);
}

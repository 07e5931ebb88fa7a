import { InvalidPathError } from './errors.js';

export const MAX_PATH_BYTES = 1024;

/**
 * Validates a decoded API path (without `/v1/`). Traversal and ambiguity are refused rather than cleaned up,
 * so a path means exactly one thing to the router, the policy engine and the audit log.
 */
export function validatePath(path: string): string {
  if (path.length === 0) throw new InvalidPathError('invalid path: empty; name a path under /v1/');
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) throw new InvalidPathError(`invalid path: longer than ${MAX_PATH_BYTES} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(path)) throw new InvalidPathError('invalid path: contains a control character (NUL, newline, ...)');
  if (path.startsWith('/')) throw new InvalidPathError('invalid path: empty segment (a doubled slash)');
  const segments = path.split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '' && i !== segments.length - 1) throw new InvalidPathError('invalid path: empty segment (a doubled slash)');
    if (s === '.' || s === '..') throw new InvalidPathError('invalid path: "." and ".." segments are not allowed');
  }
  return path;
}

/** Compiles a route pattern (`data/:path+`, `keys/:name`, `accessors/`) to an anchored regex and its parameter names. */
export function compilePattern(pattern: string): { re: RegExp; names: string[]; prefix: string } {
  const names: string[] = [];
  // The literal segments before the first parameter: a path that does not start with them cannot match, so the
  // router skips the regex (a mount's routes are tried in order on every request).
  const literal: string[] = [];
  for (const seg of pattern.replace(/\/$/, '').split('/')) {
    if (seg.startsWith(':')) break;
    literal.push(seg);
  }
  const parts = pattern.replace(/\/$/, '').split('/').map((seg, i, all) => {
    const m = /^:([a-zA-Z_][a-zA-Z0-9_]*)([*+]?)$/.exec(seg);
    if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    names.push(m[1]!);
    if (m[2] && i !== all.length - 1) throw new Error(`route pattern ${pattern}: ${seg} must be the last segment`);
    return m[2] === '*' ? '(.*)' : m[2] === '+' ? '(.+)' : '([^/]+)';
  });
  let source = parts.join('/');
  // `x/:rest*` also matches `x` itself; every pattern tolerates one trailing slash.
  source = source.replace(/\/\(\.\*\)$/, '(?:/(.*))?');
  return { re: new RegExp(`^${source}/?$`), names, prefix: literal.join('/') };
}

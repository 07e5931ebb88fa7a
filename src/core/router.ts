import type { SecureStore } from './barrier/index.js';
import { compilePattern } from './path.js';
import type { Backend, Route } from './request.js';

export interface MountEntry {
  /** Ends with '/': `secret/`, `auth/token/`, `sys/`. */
  path: string;
  type: string;
  uuid: string;
  description: string;
  options: Record<string, string>;
  /** Part of every server; cannot be disabled or moved. */
  builtin?: boolean;
}

export interface CompiledRoute {
  route: Route;
  re: RegExp;
  names: string[];
  /** Every path this route matches starts with it. */
  prefix: string;
}

export interface Mounted {
  entry: MountEntry;
  backend: Backend;
  store: SecureStore;
  routes: CompiledRoute[];
}

export interface RouteMatch {
  mounted: Mounted;
  relPath: string;
  compiled: CompiledRoute | null;
  params: Record<string, string>;
}

/** Longest-prefix mount lookup, then the first route of that mount whose pattern matches. */
export class Router {
  private mounts: Mounted[] = [];

  add(entry: MountEntry, backend: Backend, store: SecureStore): Mounted {
    if (this.mounts.some((m) => m.entry.path === entry.path)) throw new Error(`path ${entry.path} is already mounted`);
    const mounted: Mounted = {
      entry, backend, store,
      routes: backend.routes.map((route) => ({ route, ...compilePattern(route.pattern) })),
    };
    this.mounts.push(mounted);
    this.mounts.sort((a, b) => b.entry.path.length - a.entry.path.length);
    return mounted;
  }

  remove(path: string): Mounted | null {
    const i = this.mounts.findIndex((m) => m.entry.path === path);
    if (i === -1) return null;
    return this.mounts.splice(i, 1)[0]!;
  }

  get(path: string): Mounted | null {
    return this.mounts.find((m) => m.entry.path === path) ?? null;
  }

  /** The mount that owns `path`, or null. A path equal to a mount without its slash (`secret`) belongs to it. */
  find(path: string): { mounted: Mounted; relPath: string } | null {
    for (const m of this.mounts) {
      if (path.startsWith(m.entry.path)) return { mounted: m, relPath: path.slice(m.entry.path.length) };
      if (path + '/' === m.entry.path) return { mounted: m, relPath: '' };
    }
    return null;
  }

  match(path: string): RouteMatch | null {
    const found = this.find(path);
    if (!found) return null;
    for (const compiled of found.mounted.routes) {
      if (!found.relPath.startsWith(compiled.prefix)) continue;
      const m = compiled.re.exec(found.relPath);
      if (!m) continue;
      const params: Record<string, string> = {};
      compiled.names.forEach((name, i) => { params[name] = m[i + 1] ?? ''; });
      return { ...found, compiled, params };
    }
    return { ...found, compiled: null, params: {} };
  }

  all(): readonly Mounted[] {
    return this.mounts;
  }

  /** Mounts that overlap `path` (a prefix of it, or under it): a new mount must not overlap any. */
  overlapping(path: string): Mounted[] {
    return this.mounts.filter((m) => m.entry.path.startsWith(path) || path.startsWith(m.entry.path));
  }
}

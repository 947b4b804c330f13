import { FuncdError } from "../shared/errors.js";

/** Where a request path leads: the function and the path the function sees. */
export interface RouteMatch {
  functionName: string;
  /** The path after the matched prefix, always starting with "/". */
  subPath: string;
  /** The prefix that was stripped, forwarded as `x-forwarded-prefix`. */
  prefix: string;
}

/**
 * The in-memory route table: `/function/<name>/...` for every function plus
 * custom routes by longest prefix. Rebuilt whole on every change and swapped
 * in, so a lookup never touches the store and never sees a half-built table.
 */
export class RouteTable {
  #functions = new Set<string>();
  #custom = new Map<string, string>();
  #maxDepth = 0;

  /** Replaces the table. Throws ROUTE_CONFLICT when two functions claim one route. */
  rebuild(functions: Iterable<{ name: string; routes: readonly string[] }>): void {
    const names = new Set<string>();
    const custom = new Map<string, string>();
    let maxDepth = 0;
    for (const fn of functions) {
      names.add(fn.name);
      for (const route of fn.routes) {
        const owner = custom.get(route);
        if (owner && owner !== fn.name) {
          throw new FuncdError(
            "ROUTE_CONFLICT",
            `Route "${route}" is claimed by both "${owner}" and "${fn.name}"`,
          );
        }
        custom.set(route, fn.name);
        maxDepth = Math.max(maxDepth, depth(route));
      }
    }
    this.#functions = names;
    this.#custom = custom;
    this.#maxDepth = maxDepth;
  }

  /** Which function owns `route` now, if any. */
  ownerOf(route: string): string | undefined {
    return this.#custom.get(route);
  }

  /** Resolves a request path (without query). */
  match(pathname: string): RouteMatch | undefined {
    if (pathname.startsWith("/function/")) {
      const rest = pathname.slice("/function/".length);
      const slash = rest.indexOf("/");
      const name = slash === -1 ? rest : rest.slice(0, slash);
      const subPath = slash === -1 ? "/" : rest.slice(slash);
      return { functionName: name, subPath, prefix: `/function/${name}` };
    }
    if (this.#custom.size === 0) return undefined;
    // Longest prefix first: try "/a/b/c", then "/a/b", then "/a" — at most maxDepth lookups.
    let candidate = pathname.length > 1 ? pathname.replace(/\/+$/, "") : pathname;
    let segments = depth(candidate);
    while (segments > this.#maxDepth) {
      candidate = candidate.slice(0, candidate.lastIndexOf("/"));
      segments--;
    }
    while (candidate.length > 0) {
      const owner = this.#custom.get(candidate);
      if (owner) {
        const subPath = pathname.slice(candidate.length) || "/";
        return {
          functionName: owner,
          subPath: subPath.startsWith("/") ? subPath : `/${subPath}`,
          prefix: candidate,
        };
      }
      candidate = candidate.slice(0, candidate.lastIndexOf("/"));
    }
    return undefined;
  }

  hasFunction(name: string): boolean {
    return this.#functions.has(name);
  }
}

function depth(route: string): number {
  let n = 0;
  for (let i = 0; i < route.length; i++) if (route.charCodeAt(i) === 47) n++;
  return n;
}

/**
 * `funcd apply`'s work on the daemon: read every document (src/manifests/), refuse the lot when one is
 * invalid (unless asked to go on), deploy each function through the Deployer (so an unchanged one is a
 * no-op), and with `prune` remove the functions an earlier apply of the same source made that the source
 * no longer describes. Each function records where it came from in its annotations.
 */
import type { RuntimeRegistry } from "../builder/runtimes.js";
import { readManifests } from "../manifests/read.js";
import type {
  ConvertedFunction,
  GitSourceRef,
  IgnoredField,
  ManifestFormat,
  ManifestProblem,
} from "../manifests/types.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import type { Store } from "../store/types.js";
import type { Deployer } from "./deployer.js";
import { type DeployRequest, DeployRequestSchema } from "./spec.js";

/** Annotations apply writes on every function it deploys. */
export const APPLIED_FROM = "funcd.dev/applied-from";
export const APPLIED_FORMAT = "funcd.dev/format";

export type FileMap = Record<string, string | { base64: string }>;

export interface ApplyRequest {
  yaml: string;
  /** Where the documents came from (a file path); functions remember it, and `prune` works within it. */
  source?: string | undefined;
  /** Code folders the documents name (OpenFaaS `handler`, funcd `path`), by the path written in them. */
  folders?: Record<string, FileMap> | undefined;
  /** Other files the documents name (OpenFaaS `environment_file`), by the path written in them. */
  includes?: Record<string, string> | undefined;
  strict?: boolean | undefined;
  continueOnError?: boolean | undefined;
  prune?: boolean | undefined;
  dryRun?: boolean | undefined;
}

export type ApplyOutcome = "created" | "updated" | "unchanged" | "failed" | "skipped" | "pruned" | "valid";

export interface ApplyItem {
  name: string;
  index: number | null;
  format: ManifestFormat | null;
  label: string;
  result: ApplyOutcome;
  revision: { id: string; number: number } | null;
  ignored: IgnoredField[];
  notes: string[];
  honoured: number;
  problem?: { code: string; detail: string; [extra: string]: unknown };
}

export interface ApplyResponse {
  source: string | null;
  items: ApplyItem[];
  /** Problems of documents skipped with `continueOnError`. */
  problems: ManifestProblem[];
}

export interface ApplierDeps {
  store: Store;
  deployer: Deployer;
  runtimes: RuntimeRegistry;
}

export class Applier {
  readonly #d: ApplierDeps;

  constructor(deps: ApplierDeps) {
    this.#d = deps;
  }

  /** Reads the documents and checks them; throws MANIFEST_INVALID (nothing applied) unless told to go on. */
  plan(request: ApplyRequest): {
    ready: Array<{ fn: ConvertedFunction; body: DeployRequest }>;
    problems: ManifestProblem[];
  } {
    const runtimes = this.#d.runtimes;
    const read = readManifests(request.yaml, {
      runtimes: {
        resolve: (name) => {
          try {
            return runtimes.get(name).runtime;
          } catch {
            return undefined;
          }
        },
        names: () => runtimes.names(),
      },
      includes: request.includes ?? {},
    });
    const problems = [...read.problems];
    if (request.strict) {
      for (const fn of read.functions) {
        for (const field of fn.ignored)
          problems.push({
            path: field.path,
            message: `funcd ignores this field (${field.reason}); --strict refuses it`,
          });
      }
    }
    const ready: Array<{ fn: ConvertedFunction; body: DeployRequest }> = [];
    for (const fn of read.functions) {
      const at = `documents[${fn.index}] (${fn.label})`;
      const annotations = {
        ...(fn.spec.annotations as Record<string, string> | undefined),
        ...(request.source ? { [APPLIED_FROM]: request.source } : {}),
        [APPLIED_FORMAT]: fn.format,
      };
      const code = this.#code(fn, request, at, problems);
      const parsed = DeployRequestSchema.safeParse({ ...fn.spec, annotations, name: fn.name, ...code });
      if (!parsed.success) {
        for (const issue of parsed.error.issues)
          problems.push({ path: `${at} ${issue.path.join(".") || "spec"}`, message: issue.message });
        continue;
      }
      const gitSecret = parsed.data.source?.git.secret;
      const missing = [...(parsed.data.secrets ?? []), ...(gitSecret ? [gitSecret] : [])].filter(
        (s) => this.#d.store.secrets.get(s) === undefined,
      );
      for (const secret of missing)
        problems.push({
          path: at,
          message: `uses the funcd secret "${secret}", which does not exist; create it first: funcd secret set ${secret}`,
        });
      if (missing.length === 0) ready.push({ fn, body: parsed.data });
    }
    if (problems.length > 0 && !request.continueOnError) {
      throw new FuncdError(
        "MANIFEST_INVALID",
        `${problems.length} problem${problems.length === 1 ? "" : "s"} in ${request.source ?? "the documents"}; nothing was applied (errors lists each)`,
        { extra: { errors: problems } },
      );
    }
    // With continueOnError: nothing from a document that has a problem.
    const bad = new Set(
      problems.map((p) => /^documents\[(\d+)\]/.exec(p.path)?.[1]).filter((i) => i !== undefined),
    );
    return { ready: ready.filter((r) => !bad.has(String(r.fn.index))), problems };
  }

  async apply(
    request: ApplyRequest,
    onProgress: (message: string) => void = () => {},
  ): Promise<ApplyResponse> {
    const { ready, problems } = this.plan(request);
    const items: ApplyItem[] = [];
    for (const { fn, body } of ready) {
      const base = {
        name: fn.name,
        index: fn.index,
        format: fn.format,
        label: fn.label,
        ignored: fn.ignored,
        notes: fn.notes,
        honoured: fn.honoured,
      };
      if (request.dryRun) {
        items.push({ ...base, result: "valid", revision: null });
        continue;
      }
      try {
        const existed = this.#d.store.functions.get(fn.name) !== undefined;
        const result = await this.#d.deployer.deploy(body, {
          onProgress: (message) => onProgress(`${fn.name}: ${message}`),
        });
        items.push({
          ...base,
          result: !result.changed ? "unchanged" : existed ? "updated" : "created",
          revision: { id: result.revision.id, number: result.revision.number },
        });
      } catch (err) {
        const error =
          err instanceof FuncdError ? err : new FuncdError("DEPLOY_FAILED", `${fn.name}: ${messageOf(err)}`);
        items.push({
          ...base,
          result: "failed",
          revision: null,
          problem: { code: error.code, detail: error.message, ...error.extra },
        });
      }
    }
    if (request.prune && request.source && !request.dryRun) {
      const described = new Set(ready.map((r) => r.fn.name));
      // Only when every document was read: a skipped invalid document must not prune what it describes.
      const complete = problems.length === 0;
      for (const fn of this.#d.store.functions.list()) {
        if (fn.spec.annotations[APPLIED_FROM] !== request.source || described.has(fn.name) || !complete)
          continue;
        onProgress(`${fn.name}: removing (no longer in ${request.source})`);
        await this.#d.deployer.remove(fn.name);
        items.push({
          name: fn.name,
          index: null,
          format: (fn.spec.annotations[APPLIED_FORMAT] as ManifestFormat | undefined) ?? null,
          label: fn.name,
          result: "pruned",
          revision: null,
          ignored: [],
          notes: [],
          honoured: 0,
        });
      }
    }
    return { source: request.source ?? null, items, problems };
  }

  #code(
    fn: ConvertedFunction,
    request: ApplyRequest,
    at: string,
    problems: ManifestProblem[],
  ): { files?: FileMap; source?: { git: GitSourceRef } } {
    switch (fn.code.kind) {
      case "inline":
        return { files: fn.code.files };
      case "folder": {
        const files = request.folders?.[fn.code.path];
        if (!files) {
          problems.push({
            path: at,
            message: `the code folder ${fn.code.path} was not sent (funcd apply -f FILE sends the folders its documents name)`,
          });
          return {};
        }
        return { files: { ...files, ...fn.code.extraFiles } };
      }
      case "git":
        // The deployer fetches it (and `funcd sync` again later), with the credentials of its secret.
        return { source: { git: fn.code.git } };
      case "current":
        return {};
    }
  }
}

import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { stringify } from "yaml";
import { z } from "zod";
import type { Applier } from "../deploy/apply.js";
import type { Deployer } from "../deploy/deployer.js";
import { FUNCTION_NAME } from "../deploy/spec.js";
import { toKubernetes, toKyma } from "../manifests/kubernetes.js";
import type { Fleet } from "../scaler/fleet.js";
import { FuncdError } from "../shared/errors.js";
import type { Store } from "../store/types.js";
import { respondWithProgress } from "./progress.js";
import { deployView } from "./views.js";

const FileMap = z.record(z.string(), z.union([z.string(), z.object({ base64: z.string() })]));

const ApplyBody = z.object({
  yaml: z
    .string()
    .describe(
      "the documents: Kyma or Kubeless Functions, OpenFaaS or funcd stacks, funcd Functions (multi-document YAML)",
    ),
  source: z
    .string()
    .max(1024)
    .optional()
    .describe("where they came from (a file path); recorded on each function, scopes prune"),
  folders: z
    .record(z.string(), FileMap)
    .optional()
    .describe("code folders the documents name, by the path written in them"),
  includes: z
    .record(z.string(), z.string())
    .optional()
    .describe("other files the documents name (environment_file)"),
  strict: z.boolean().optional().describe("a field funcd would ignore is an error"),
  continueOnError: z.boolean().optional().describe("apply the valid documents even when others are invalid"),
  prune: z
    .boolean()
    .optional()
    .describe("delete functions applied from the same source that it no longer describes"),
  dryRun: z.boolean().optional().describe("check and convert only; deploy nothing"),
});

/** `POST /api/v1/apply`: functions described for funcd, Kyma, Kubeless or OpenFaaS, deployed as they are. */
export function applyRoutes(applier: Applier, deps: { deployer: Deployer; store: Store; fleet: Fleet }) {
  return async (root: FastifyInstance): Promise<void> => {
    const app = root.withTypeProvider<ZodTypeProvider>();
    app.post(
      "/api/v1/apply",
      {
        schema: {
          tags: ["functions"],
          summary:
            "Apply function descriptions (funcd, Kyma, Kubeless, OpenFaaS); each field honoured or reported",
          body: ApplyBody,
        },
      },
      async (request, reply) => {
        // Checked before any answer starts, so an invalid file is a plain 400 problem, not a stream.
        applier.plan({ ...request.body, dryRun: true });
        return respondWithProgress(
          request,
          reply,
          "apply",
          (onProgress) => applier.apply(request.body, onProgress),
          (result) => ({ status: 200, body: result }),
        );
      },
    );

    app.post(
      "/api/v1/functions/:name/sync",
      {
        schema: {
          tags: ["functions"],
          summary: "Fetch a git-sourced function's ref again and deploy it when it moved",
          params: z.object({ name: z.string().regex(FUNCTION_NAME, "not a valid function name") }),
        },
      },
      async (request, reply) =>
        respondWithProgress(
          request,
          reply,
          "sync",
          (onProgress) => deps.deployer.sync(request.params.name, onProgress),
          (result) => ({ status: 200, body: deployView(result, deps.store, deps.fleet) }),
        ),
    );

    app.get(
      "/api/v1/functions/:name/export",
      {
        schema: {
          tags: ["functions"],
          summary: "A function as Kubernetes objects, a Kyma Function or a funcd Function (YAML in `yaml`)",
          params: z.object({ name: z.string().regex(FUNCTION_NAME, "not a valid function name") }),
          querystring: z.object({
            format: z.enum(["kubernetes", "kyma", "funcd"]).default("kubernetes"),
            keda: z.enum(["true", "false"]).default("false"),
            includeSecretValues: z.enum(["true", "false"]).default("false"),
          }),
        },
      },
      async (request) => {
        const { store } = deps;
        const fn = store.functions.get(request.params.name);
        if (!fn) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${request.params.name}"`);
        const revision = fn.activeRevision ? store.revisions.get(fn.activeRevision) : undefined;
        const { format } = request.query;
        if (format === "kubernetes") {
          const secretValues =
            request.query.includeSecretValues === "true"
              ? Object.fromEntries(
                  (fn.spec.secrets ?? []).map((s) => [s, store.secrets.value(s)?.toString("utf8") ?? ""]),
                )
              : undefined;
          const { objects, notes } = toKubernetes(
            { name: fn.name, spec: fn.spec, image: revision?.image ?? null },
            { keda: request.query.keda === "true", ...(secretValues ? { secretValues } : {}) },
          );
          return { format, objects, notes, yaml: objects.map((o) => stringify(o)).join("---\n") };
        }
        const files: Record<string, string> = {};
        for (const entry of revision?.files ?? []) {
          const data = store.blobs.get(entry.hash);
          if (data) files[entry.path] = data.toString("utf8");
        }
        if (format === "kyma") {
          const { object, problem } = toKyma({ name: fn.name, spec: fn.spec, files });
          if (!object) throw new FuncdError("BAD_REQUEST", problem ?? "cannot export");
          return { format, objects: [object], notes: [], yaml: stringify(object) };
        }
        // Durations as text: a bare number in a spec means seconds.
        const { name: _n, ...stored } = fn.spec;
        const spec = {
          ...stored,
          timeout: `${stored.timeout}ms`,
          scale: {
            ...stored.scale,
            idleTimeout: `${stored.scale.idleTimeout}ms`,
            stableWindow: `${stored.scale.stableWindow}ms`,
            panicWindow: `${stored.scale.panicWindow}ms`,
          },
        };
        const object = {
          apiVersion: "funcd.dev/v1",
          kind: "Function",
          metadata: { name: fn.name },
          spec: spec.source?.git ? spec : { ...spec, source: { inline: { files } } },
        };
        return { format, objects: [object], notes: [], yaml: stringify(object) };
      },
    );
  };
}

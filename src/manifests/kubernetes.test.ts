import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { revisionId } from "../deploy/revision-id.js";
import { DeployRequestSchema, type FunctionSpec } from "../deploy/spec.js";
import { toKubernetes, toKyma } from "./kubernetes.js";
import { readManifests } from "./read.js";
import type { ConvertedFunction, RuntimeLookup } from "./types.js";

const runtimes: RuntimeLookup = {
  resolve: (name) =>
    name === "nodejs20" ? "nodejs20" : ["python3", "python312"].includes(name) ? "python3" : undefined,
  names: () => ["nodejs20", "python3"],
};

/** What the daemon would store for a converted function: the parsed spec (runtime by its template's name) and files. */
function deployed(fn: ConvertedFunction) {
  const files = fn.code.kind === "inline" ? fn.code.files : {};
  const { files: _f, archive: _a, ...spec } = DeployRequestSchema.parse({ ...fn.spec, name: fn.name, files });
  const stored: FunctionSpec = { ...spec, runtime: runtimes.resolve(spec.runtime) ?? spec.runtime };
  const manifest = Object.entries(files).map(([path, text]) => ({
    path,
    hash: createHash("sha256").update(text).digest("hex"),
    size: text.length,
    mode: 0o644,
  }));
  return { spec: stored, files, revision: revisionId(fn.name, stored, manifest) };
}

const MODELS: Record<string, (o: never) => { validate(): void }> = {
  Deployment: (o) => new Deployment(o),
  Service: (o) => new Service(o),
  HorizontalPodAutoscaler: (o) => new HorizontalPodAutoscaler(o),
  Secret: (o) => new Secret(o),
};

describe("export to Kubernetes", () => {
  const kyma = readManifests(
    readFileSync(new URL("../../examples/portability/kyma.yaml", import.meta.url), "utf8"),
    {
      runtimes,
    },
  );

  it("every generated object passes the official Kubernetes OpenAPI schema (kubernetes-models)", () => {
    for (const fn of kyma.functions) {
      const { spec } = deployed(fn);
      const { objects } = toKubernetes(
        { name: fn.name, spec, image: "registry.example/fn:1" },
        { secretValues: { "kyma-greeting.prefix": "x" } },
      );
      expect(objects.map((o) => o.kind)).toEqual(
        spec.secrets?.length
          ? ["Deployment", "Service", "HorizontalPodAutoscaler", "Secret"]
          : ["Deployment", "Service", "HorizontalPodAutoscaler"],
      );
      for (const object of objects) {
        const model = MODELS[object.kind];
        expect(model, object.kind).toBeDefined();
        expect(() => model?.(object as never).validate()).not.toThrow();
      }
    }
  });

  it("the Deployment has the buildless pod security and health probes", () => {
    const fn = kyma.functions[0] as ConvertedFunction;
    const { objects } = toKubernetes({ name: fn.name, spec: deployed(fn).spec, image: null });
    const container = (
      objects[0] as unknown as { spec: { template: { spec: { containers: Record<string, unknown>[] } } } }
    ).spec.template.spec.containers[0];
    expect(container?.securityContext).toEqual({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(container?.livenessProbe).toMatchObject({ httpGet: { path: "/healthz" } });
    expect(container?.readinessProbe).toMatchObject({ httpGet: { path: "/healthz" } });
  });

  it("says when there is no image, and leaves secret values out unless given", () => {
    const fn = kyma.functions[0] as ConvertedFunction;
    const { objects, notes } = toKubernetes({ name: fn.name, spec: deployed(fn).spec, image: null });
    expect(objects.some((o) => o.kind === "Secret")).toBe(false);
    expect(notes.join("\n")).toMatch(/has no image/);
    expect(notes.join("\n")).toMatch(/kubectl create secret generic kyma-orders-secrets/);
  });

  it("round-trips Kyma: apply → export → apply gives the same revision", () => {
    for (const fn of kyma.functions) {
      const first = deployed(fn);
      const { object, problem } = toKyma({ name: fn.name, spec: first.spec, files: first.files });
      expect(problem).toBeUndefined();
      const again = readManifests(stringify(object), { runtimes });
      expect(again.problems).toEqual([]);
      const second = deployed(again.functions[0] as ConvertedFunction);
      expect(second.revision).toBe(first.revision);
    }
  });
});

/**
 * Kubeless `kubeless.io/v1beta1` `Function` → funcd spec. Kubeless handlers (`file.func`, called with
 * `(event, context)`) are funcd's kubeless style, so the inline function runs as written; older Node and
 * Python versions run on funcd's.
 */
import { FUNCTION_NAME } from "../deploy/spec.js";
import { type EnvResult, envSpec, readEnvList } from "./env-refs.js";
import { readK8sResources } from "./kyma.js";
import { mapRuntime } from "./runtimes.js";
import type { ConvertedFunction, RuntimeLookup } from "./types.js";
import { child, Findings, isRecord, type Json } from "./walk.js";

export const KUBELESS_API_VERSION = "kubeless.io/v1beta1";

export function readKubeless(
  doc: Json,
  index: number,
  runtimes: RuntimeLookup,
): { fn?: ConvertedFunction; findings: Findings } {
  const base = `documents[${index}]`;
  const f = new Findings();
  f.rest(doc, base, ["apiVersion", "kind", "metadata", "spec"]);
  f.honour(2);
  const metadata = f.record(doc, "metadata", base) ?? {};
  const metaPath = child(base, "metadata");
  const name = f.string(metadata, "name", metaPath);
  if (name === undefined) f.problem(child(metaPath, "name"), "is required");
  else if (!FUNCTION_NAME.test(name))
    f.problem(
      child(metaPath, "name"),
      `"${name}" is not a funcd function name (lower-case letters, digits and '-')`,
    );
  else f.honour();
  f.rest(metadata, metaPath, ["name", "labels", "annotations"], {
    namespace: "funcd has one namespace: function names are unique per daemon",
  });
  const out: Json = {};
  const labels = f.stringMap(metadata, "labels", metaPath);
  const annotations = f.stringMap(metadata, "annotations", metaPath);
  if (labels && Object.keys(labels).length > 0) {
    out.labels = labels;
    f.honour();
  }
  if (annotations && Object.keys(annotations).length > 0) {
    out.annotations = annotations;
    f.honour();
  }

  const spec = f.record(doc, "spec", base);
  const specPath = child(base, "spec");
  if (!spec) {
    f.problem(specPath, "is required");
    return { findings: f };
  }
  f.rest(
    spec,
    specPath,
    [
      "function",
      "handler",
      "runtime",
      "deps",
      "timeout",
      "function-content-type",
      "deployment",
      "horizontalPodAutoscaler",
    ],
    {
      checksum: "funcd hashes the code itself (the revision id)",
      service: "funcd's gateway serves every function at /function/<name> (add routes for other paths)",
      schedule: "funcd has no cron trigger yet",
      topic: "funcd has no message-queue trigger",
      type: "a trigger type: funcd functions are HTTP",
    },
  );
  const rawRuntime = f.string(spec, "runtime", specPath);
  let runtime: string | undefined;
  if (rawRuntime === undefined) f.problem(child(specPath, "runtime"), "is required (nodejs14, python3.8, …)");
  else runtime = mapRuntime("kubeless", rawRuntime, child(specPath, "runtime"), f, runtimes);
  if (runtime) out.runtime = runtime;
  const python = runtime !== undefined && (runtimes.resolve(runtime) ?? runtime).startsWith("python");

  const handler = f.string(spec, "handler", specPath);
  const handlerMatch =
    handler === undefined ? null : /^([A-Za-z0-9_\-/.]+)\.([A-Za-z_$][A-Za-z0-9_$]*)$/.exec(handler);
  if (handler === undefined)
    f.problem(child(specPath, "handler"), "is required (file.function, e.g. hello.foo)");
  else if (!handlerMatch) f.problem(child(specPath, "handler"), `"${handler}" is not file.function`);
  else {
    out.handler = handler;
    out.handlerStyle = "kubeless";
    f.honour();
  }

  const files: Record<string, string> = {};
  const text = f.string(spec, "function", specPath);
  const contentType = f.string(spec, "function-content-type", specPath) ?? "text";
  if (text === undefined) f.problem(child(specPath, "function"), "is required: the function's source");
  else if (handlerMatch) {
    const file = `${handlerMatch[1]}${python ? ".py" : ".js"}`;
    if (contentType === "text") files[file] = text;
    else if (contentType === "base64") files[file] = Buffer.from(text, "base64").toString("utf8");
    else
      f.problem(
        child(specPath, "function-content-type"),
        `"${contentType}" is not supported: funcd reads text or base64 source (unzip it into a folder and funcd deploy it)`,
      );
    f.honour(spec["function-content-type"] === undefined ? 1 : 2);
  }
  const deps = f.string(spec, "deps", specPath);
  if (deps !== undefined && deps.trim() !== "") {
    files[python ? "requirements.txt" : "package.json"] = deps;
    f.honour();
  }

  const timeout = f.string(spec, "timeout", specPath);
  if (timeout !== undefined) {
    // Kubeless writes seconds as a string ("180").
    if (/^\d+$/.test(timeout) && Number(timeout) > 0) {
      out.timeout = `${Math.min(Number(timeout), 900)}s`;
      f.honour();
      if (Number(timeout) > 900) f.notes.push(`timeout ${timeout}s is capped at funcd's 900s`);
    } else f.problem(child(specPath, "timeout"), `"${timeout}" is not a number of seconds`);
  }

  readDeployment(f.record(spec, "deployment", specPath), child(specPath, "deployment"), f, out);
  const hpa = f.record(spec, "horizontalPodAutoscaler", specPath);
  if (hpa) {
    const hpaPath = child(specPath, "horizontalPodAutoscaler");
    f.rest(hpa, hpaPath, ["spec"], { metadata: "funcd names nothing but the function" });
    const hpaSpec = f.record(hpa, "spec", hpaPath) ?? {};
    const hpaSpecPath = child(hpaPath, "spec");
    f.rest(hpaSpec, hpaSpecPath, ["minReplicas", "maxReplicas"], {
      metrics: "funcd scales on requests in flight per instance (concurrency), not CPU or memory",
      scaleTargetRef: "funcd scales the function itself",
    });
    const scale: Json = {};
    if (typeof hpaSpec.minReplicas === "number") {
      scale.min = hpaSpec.minReplicas;
      f.honour();
    }
    if (typeof hpaSpec.maxReplicas === "number") {
      scale.max = hpaSpec.maxReplicas;
      f.honour();
    }
    if (Object.keys(scale).length > 0) out.scale = scale;
  }

  if (name === undefined || runtime === undefined || f.problems.length > 0) return { findings: f };
  return {
    findings: f,
    fn: {
      index,
      format: "kubeless",
      label: `Function/${name}`,
      name,
      spec: out,
      code: { kind: "inline", files },
      ignored: f.ignored,
      notes: f.notes,
      honoured: f.honoured,
    },
  };
}

/** `spec.deployment`: the first container's env and resources are read; the rest is Kubernetes'. */
function readDeployment(deployment: Json | undefined, path: string, f: Findings, out: Json): void {
  if (!deployment) return;
  f.rest(deployment, path, ["spec"], { metadata: "labels and annotations go on the Function's metadata" });
  const spec = f.record(deployment, "spec", path) ?? {};
  const specPath = child(path, "spec");
  f.rest(spec, specPath, ["template"], {
    replicas: "the scaler decides how many instances run (horizontalPodAutoscaler gives the range)",
  });
  const template = f.record(spec, "template", specPath) ?? {};
  const templatePath = child(specPath, "template");
  f.rest(template, templatePath, ["spec"]);
  const podSpec = f.record(template, "spec", templatePath) ?? {};
  const podPath = child(templatePath, "spec");
  f.rest(podSpec, podPath, ["containers"]);
  const containers = f.list(podSpec, "containers", podPath) ?? [];
  containers.forEach((container, i) => {
    const at = child(child(podPath, "containers"), i);
    if (!isRecord(container)) return;
    if (i > 0) {
      f.ignore(at, "funcd runs one process per instance: only the first container's env and resources apply");
      return;
    }
    f.rest(container, at, ["env", "resources"], {
      image: "funcd builds its own image (or runs none, with the process driver)",
    });
    const env: EnvResult = { env: {}, secrets: [], secretEnv: {} };
    const list = f.list(container, "env", at);
    if (list) readEnvList(list, child(at, "env"), f, env);
    Object.assign(out, envSpec(env));
    readK8sResources(f.record(container, "resources", at), child(at, "resources"), f, out);
  });
}

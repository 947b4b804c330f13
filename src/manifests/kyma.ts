/**
 * Kyma `serverless.kyma-project.io/v1alpha2` `Function` → funcd spec (the buildless design's fields).
 * Kyma's handler contract is funcd's (`main(event, context)` in handler.js / handler.py), so inline source
 * is deployed as written.
 */
import { FUNCTION_NAME } from "../deploy/spec.js";
import { type EnvResult, envSpec, readEnvList } from "./env-refs.js";
import { mapRuntime } from "./runtimes.js";
import type { CodeSource, ConvertedFunction, RuntimeLookup } from "./types.js";
import { child, cpuValue, Findings, type Json, memoryMiB } from "./walk.js";

export const KYMA_API_VERSION = "serverless.kyma-project.io/v1alpha2";

const PROFILES = ["XS", "S", "M", "L", "XL"];

/** Reads one Kyma Function document; problems go to the returned findings. */
export function readKyma(
  doc: Json,
  index: number,
  runtimes: RuntimeLookup,
): { fn?: ConvertedFunction; findings: Findings } {
  const base = `documents[${index}]`;
  const f = new Findings();
  f.rest(doc, base, ["apiVersion", "kind", "metadata", "spec"], {
    status: "status is written by Kyma's controller, not by users",
  });
  f.honour(2);
  const metadata = f.record(doc, "metadata", base) ?? {};
  const metaPath = child(base, "metadata");
  const name = f.string(metadata, "name", metaPath);
  if (name === undefined) f.problem(child(metaPath, "name"), "is required");
  else if (!FUNCTION_NAME.test(name))
    f.problem(
      child(metaPath, "name"),
      `"${name}" is not a funcd function name (lower-case letters, digits and '-', starting with a letter, at most 63)`,
    );
  else f.honour();
  f.rest(metadata, metaPath, ["name", "labels", "annotations", "namespace"], {
    namespace: "funcd has one namespace: function names are unique per daemon",
    uid: "set by Kubernetes",
    resourceVersion: "set by Kubernetes",
    generation: "set by Kubernetes",
    creationTimestamp: "set by Kubernetes",
    managedFields: "set by Kubernetes",
  });
  if (metadata.namespace !== undefined)
    f.ignore(child(metaPath, "namespace"), "funcd has one namespace: function names are unique per daemon");
  const labels: Record<string, string> = { ...f.stringMap(metadata, "labels", metaPath) };
  const annotations: Record<string, string> = { ...f.stringMap(metadata, "annotations", metaPath) };
  if (metadata.labels !== undefined) f.honour();
  if (metadata.annotations !== undefined) f.honour();

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
      "runtime",
      "source",
      "env",
      "resourceConfiguration",
      "replicas",
      "scaleConfig",
      "labels",
      "annotations",
      "secretMounts",
      "runtimeImageOverride",
    ],
    {},
  );
  const out: Json = {};

  const rawRuntime = f.string(spec, "runtime", specPath);
  let runtime: string | undefined;
  if (rawRuntime === undefined) f.problem(child(specPath, "runtime"), "is required (nodejs20, python312)");
  else runtime = mapRuntime("kyma", rawRuntime, child(specPath, "runtime"), f, runtimes);
  if (runtime) out.runtime = runtime;
  const python = runtime !== undefined && (runtimes.resolve(runtime) ?? runtime).startsWith("python");

  const code = readSource(spec, specPath, f, python);

  const env: EnvResult = { env: {}, secrets: [], secretEnv: {} };
  const envList = f.list(spec, "env", specPath);
  if (envList) readEnvList(envList, child(specPath, "env"), f, env);
  Object.assign(out, envSpec(env));

  readResources(spec, specPath, f, out);

  const scaleConfig = f.record(spec, "scaleConfig", specPath);
  const replicas = spec.replicas;
  if (scaleConfig) {
    const scalePath = child(specPath, "scaleConfig");
    f.rest(scaleConfig, scalePath, ["minReplicas", "maxReplicas"]);
    const min = scaleConfig.minReplicas;
    const max = scaleConfig.maxReplicas;
    const scale: Json = {};
    if (typeof min === "number") {
      scale.min = min;
      f.honour();
    } else if (min !== undefined) f.problem(child(scalePath, "minReplicas"), "must be a number");
    if (typeof max === "number") {
      scale.max = max;
      f.honour();
    } else if (max !== undefined) f.problem(child(scalePath, "maxReplicas"), "must be a number");
    out.scale = scale;
    if (replicas !== undefined)
      f.ignore(child(specPath, "replicas"), "scaleConfig is given: it sets the instance range instead");
  } else if (replicas !== undefined) {
    if (typeof replicas === "number" && Number.isInteger(replicas) && replicas >= 0) {
      // A fixed count in Kyma: funcd keeps that many warm and never scales past it.
      out.scale = { min: replicas, max: Math.max(1, replicas) };
      f.honour();
    } else f.problem(child(specPath, "replicas"), "must be a whole number");
  }

  Object.assign(labels, f.stringMap(spec, "labels", specPath));
  Object.assign(annotations, f.stringMap(spec, "annotations", specPath));
  if (spec.labels !== undefined) f.honour();
  if (spec.annotations !== undefined) f.honour();
  if (Object.keys(labels).length > 0) out.labels = labels;
  if (Object.keys(annotations).length > 0) out.annotations = annotations;

  if (spec.secretMounts !== undefined) {
    f.ignore(
      child(specPath, "secretMounts"),
      "funcd mounts each secret a function lists as one file, /var/secrets/<name>, not a Kubernetes Secret's keys under a chosen path; list them under env (secretKeyRef) or read /var/secrets",
    );
  }
  if (spec.runtimeImageOverride !== undefined) {
    f.ignore(
      child(specPath, "runtimeImageOverride"),
      "a Kyma runtime image carries Kyma's runtime server; funcd runs its own (a funcd spec's baseImage picks the base of funcd's image)",
    );
  }

  if (name === undefined || runtime === undefined || code === undefined || f.problems.length > 0) {
    return { findings: f };
  }
  return {
    findings: f,
    fn: {
      index,
      format: "kyma",
      label: `Function/${name}`,
      name,
      spec: out,
      code,
      ignored: f.ignored,
      notes: f.notes,
      honoured: f.honoured,
    },
  };
}

function readSource(spec: Json, specPath: string, f: Findings, python: boolean): CodeSource | undefined {
  const source = f.record(spec, "source", specPath);
  const sourcePath = child(specPath, "source");
  if (!source) {
    f.problem(sourcePath, "is required (source.inline or source.gitRepository)");
    return undefined;
  }
  f.rest(source, sourcePath, ["inline", "gitRepository"]);
  const inline = f.record(source, "inline", sourcePath);
  const git = f.record(source, "gitRepository", sourcePath);
  if (inline && git) {
    f.problem(sourcePath, "give either inline or gitRepository, not both");
    return undefined;
  }
  if (inline) {
    const inlinePath = child(sourcePath, "inline");
    f.rest(inline, inlinePath, ["source", "dependencies"]);
    const text = f.string(inline, "source", inlinePath);
    if (text === undefined) {
      f.problem(child(inlinePath, "source"), "is required: the handler's code");
      return undefined;
    }
    f.honour();
    const files: Record<string, string> = { [python ? "handler.py" : "handler.js"]: text };
    const deps = f.string(inline, "dependencies", inlinePath);
    if (deps !== undefined && deps.trim() !== "") {
      files[python ? "requirements.txt" : "package.json"] = deps;
      f.honour();
    }
    return { kind: "inline", files };
  }
  if (git) {
    const gitPath = child(sourcePath, "gitRepository");
    f.rest(git, gitPath, ["url", "baseDir", "reference", "auth"]);
    const url = f.string(git, "url", gitPath);
    if (url === undefined) {
      f.problem(child(gitPath, "url"), "is required");
      return undefined;
    }
    f.honour();
    const ref = f.string(git, "reference", gitPath);
    const dir = f.string(git, "baseDir", gitPath);
    if (ref !== undefined) f.honour();
    if (dir !== undefined) f.honour();
    const auth = f.record(git, "auth", gitPath);
    let secret: string | undefined;
    if (auth) {
      const authPath = child(gitPath, "auth");
      f.rest(auth, authPath, ["type", "secretName"]);
      secret = f.string(auth, "secretName", authPath);
      if (secret === undefined) f.problem(child(authPath, "secretName"), "is required");
      else {
        f.honour(2);
        f.notes.push(
          `git credentials: funcd reads the token (basic auth) or private key (key auth) from the funcd secret "${secret}"`,
        );
      }
    }
    const cleanDir = dir?.replace(/^\/+/, "").replace(/\/+$/, "");
    return {
      kind: "git",
      git: {
        url,
        ...(ref ? { ref } : {}),
        ...(cleanDir ? { dir: cleanDir } : {}),
        ...(secret ? { secret } : {}),
      },
    };
  }
  f.problem(sourcePath, "needs inline or gitRepository");
  return undefined;
}

function readResources(spec: Json, specPath: string, f: Findings, out: Json): void {
  const config = f.record(spec, "resourceConfiguration", specPath);
  if (!config) return;
  const configPath = child(specPath, "resourceConfiguration");
  f.rest(config, configPath, ["function"], {
    build: "funcd's buildless design has no build job to size; dependency installs run in the daemon",
  });
  const fn = f.record(config, "function", configPath);
  if (!fn) return;
  const fnPath = child(configPath, "function");
  f.rest(fn, fnPath, ["profile", "resources"]);
  const profile = f.string(fn, "profile", fnPath);
  if (profile !== undefined) {
    if (PROFILES.includes(profile)) {
      out.profile = profile;
      f.honour();
    } else f.problem(child(fnPath, "profile"), `"${profile}" is not one of ${PROFILES.join(", ")}`);
  }
  readK8sResources(f.record(fn, "resources", fnPath), child(fnPath, "resources"), f, out);
}

/** A container's `resources` (limits honoured; requests reported). Shared with the Kubeless reader. */
export function readK8sResources(resources: Json | undefined, path: string, f: Findings, out: Json): void {
  if (!resources) return;
  f.rest(resources, path, resources.limits !== undefined ? ["limits"] : ["requests"], {
    requests:
      "funcd reserves nothing ahead: limits cap an instance, and the scaler decides how many run (requests set only where limits are absent)",
  });
  const limits = f.record(resources, "limits", path) ?? f.record(resources, "requests", path);
  if (!limits) return;
  const limitsPath = child(path, resources.limits !== undefined ? "limits" : "requests");
  f.rest(limits, limitsPath, ["memory", "cpu"]);
  const memory = f.string(limits, "memory", limitsPath);
  if (memory !== undefined) {
    const mib = memoryMiB(memory);
    if (mib === undefined)
      f.problem(child(limitsPath, "memory"), `"${memory}" is not a memory quantity (128Mi)`);
    else {
      out.memory = Math.max(32, mib);
      f.honour();
    }
  }
  const cpu = f.string(limits, "cpu", limitsPath);
  if (cpu !== undefined) {
    const value = cpuValue(cpu);
    if (value === undefined)
      f.problem(child(limitsPath, "cpu"), `"${cpu}" is not a CPU quantity (500m, 0.5)`);
    else {
      out.cpu = value;
      f.honour();
    }
  }
}

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { readManifests } from "./read.js";
import type { RuntimeLookup } from "./types.js";

/** The runtimes a stock daemon has: nodejs20, and python3 with its aliases. */
const runtimes: RuntimeLookup = {
  resolve: (name) =>
    name === "nodejs20"
      ? "nodejs20"
      : ["python3", "python312", "python311", "python", "python3.11", "python3.12"].includes(name)
        ? "python3"
        : undefined,
  names: () => ["nodejs20", "python3", "python312"],
};

const read = (text: string) =>
  readManifests(text, { runtimes, includes: { "openfaas/env.yml": "environment:\n  SUFFIX: '!'\n" } });
const example = (file: string) =>
  readFileSync(new URL(`../../examples/portability/${file}`, import.meta.url), "utf8");

describe("Kyma Function (v1alpha2)", () => {
  it("turns inline source, env with secretKeyRef, profile and scaleConfig into a funcd spec", () => {
    const { functions, problems } = read(example("kyma.yaml"));
    expect(problems).toEqual([]);
    const orders = functions.find((f) => f.name === "kyma-orders");
    expect(orders?.format).toBe("kyma");
    expect(orders?.spec).toMatchObject({
      runtime: "nodejs20",
      env: { CURRENCY: "EUR" },
      secrets: ["kyma-greeting.prefix"],
      secretEnv: { GREETING_PREFIX: "kyma-greeting.prefix" },
      profile: "S",
      scale: { min: 0, max: 3 },
      labels: { app: "orders", team: "shop" },
    });
    expect(orders?.code.kind).toBe("inline");
    if (orders?.code.kind === "inline")
      expect(Object.keys(orders.code.files).sort()).toEqual(["handler.js", "package.json"]);
    expect(orders?.ignored).toEqual([
      { path: "documents[0].metadata.namespace", reason: expect.stringContaining("one namespace") },
    ]);
  });

  it("writes python source as handler.py and maps replicas and resource limits", () => {
    const py = read(example("kyma.yaml")).functions.find((f) => f.name === "kyma-py");
    expect(py?.spec).toMatchObject({
      runtime: "python312",
      memory: 128,
      cpu: "200m",
      scale: { min: 1, max: 1 },
    });
    if (py?.code.kind === "inline") expect(Object.keys(py.code.files)).toEqual(["handler.py"]);
  });

  it("reads gitRepository as a git source with its credentials secret", () => {
    const { functions, problems } = read(`apiVersion: serverless.kyma-project.io/v1alpha2
kind: Function
metadata: { name: from-git }
spec:
  runtime: nodejs20
  source:
    gitRepository:
      url: https://git.example/repo.git
      baseDir: /functions/orders/
      reference: main
      auth: { type: basic, secretName: git-token }
`);
    expect(problems).toEqual([]);
    expect(functions[0]?.code).toEqual({
      kind: "git",
      git: { url: "https://git.example/repo.git", ref: "main", dir: "functions/orders", secret: "git-token" },
    });
  });

  it("reports fields funcd does not honour with the reason, and never drops an unknown one", () => {
    const { functions } = read(`apiVersion: serverless.kyma-project.io/v1alpha2
kind: Function
metadata: { name: extras }
spec:
  runtime: nodejs20
  runtimeImageOverride: europe-docker.pkg.dev/kyma/function-runtime-nodejs20:custom
  secretMounts: [{ secretName: creds, mountPath: /creds }]
  frobnicate: true
  source: { inline: { source: "module.exports = { main: () => 1 }" } }
  resourceConfiguration: { build: { profile: fast } }
`);
    const paths = functions[0]?.ignored.map((i) => i.path).sort();
    expect(paths).toEqual([
      "documents[0].spec.frobnicate",
      "documents[0].spec.resourceConfiguration.build",
      "documents[0].spec.runtimeImageOverride",
      "documents[0].spec.secretMounts",
    ]);
    for (const field of functions[0]?.ignored ?? []) expect(field.reason.length).toBeGreaterThan(10);
  });
});

describe("Kubeless Function (v1beta1)", () => {
  it("maps nodejs14 to nodejs20 with a note, and reads handler, deps, timeout, container env and the HPA", () => {
    const { functions, problems } = read(example("kubeless.yaml"));
    expect(problems).toEqual([]);
    const hello = functions.find((f) => f.name === "kubeless-hello");
    expect(hello?.spec).toMatchObject({
      runtime: "nodejs20",
      handler: "hello.foo",
      handlerStyle: "kubeless",
      timeout: "30s",
      env: { MODE: "kubeless" },
      memory: 64,
      scale: { min: 0, max: 2 },
    });
    expect(hello?.notes).toContain("runtime nodejs14 runs on funcd's nodejs20");
    if (hello?.code.kind === "inline")
      expect(Object.keys(hello.code.files).sort()).toEqual(["hello.js", "package.json"]);
    expect(hello?.ignored.map((i) => i.path).sort()).toEqual([
      "documents[0].metadata.namespace",
      "documents[0].spec.checksum",
    ]);
    const py = functions.find((f) => f.name === "kubeless-py");
    expect(py?.spec.runtime).toBe("python3");
    if (py?.code.kind === "inline") expect(Object.keys(py.code.files)).toEqual(["hello.py"]);
  });
});

describe("OpenFaaS stack", () => {
  it("reads each function: template, folder, environment (and its file), scale labels, limits", () => {
    const { functions, problems } = read(example("stack.yml"));
    expect(problems).toEqual([]);
    const node = functions.find((f) => f.name === "of-node");
    expect(node?.spec).toMatchObject({
      runtime: "nodejs20",
      handler: "_funcd_openfaas.main",
      env: { GREETING: "hello" },
      timeout: "10000ms",
      scale: { min: 0, max: 4 },
      memory: 128,
    });
    expect(node?.code).toMatchObject({ kind: "folder", path: "./openfaas/of-node" });
    expect(node?.ignored.map((i) => i.path)).toEqual(["documents[0].functions.of-node.image"]);
    const py = functions.find((f) => f.name === "of-python");
    expect(py?.spec).toMatchObject({
      runtime: "python3",
      handler: "funcd_openfaas.main",
      env: { SUFFIX: "!" },
    });
  });
});

describe("funcd's own descriptions", () => {
  it("reads a stack and a funcd.dev/v1 Function", () => {
    const { functions, problems } = read(`functions:
  sum: { path: ./examples/sum, routes: [/sum] }
---
apiVersion: funcd.dev/v1
kind: Function
metadata: { name: inline-one }
spec:
  runtime: nodejs20
  colour: blue
  source: { inline: { files: { handler.js: "module.exports = { main: () => 1 }" } } }
`);
    expect(problems).toEqual([]);
    expect(functions.map((f) => [f.name, f.format, f.code.kind])).toEqual([
      ["sum", "funcd", "folder"],
      ["inline-one", "funcd", "inline"],
    ]);
    expect(functions[1]?.ignored).toEqual([
      { path: "documents[1].spec.colour", reason: "not a funcd spec field" },
    ]);
  });
});

describe("bad documents", () => {
  it.each([
    [
      "an unknown kind",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: x }\n",
      "documents[0].apiVersion",
      /unknown kind "apps\/v1 Deployment"/,
    ],
    [
      "a runtime funcd lacks",
      "apiVersion: serverless.kyma-project.io/v1alpha2\nkind: Function\nmetadata: { name: x }\nspec: { runtime: python39, source: { inline: { source: x } } }\n",
      "documents[0].spec.runtime",
      /runtime "python39" is not available/,
    ],
    [
      "a missing source",
      "apiVersion: serverless.kyma-project.io/v1alpha2\nkind: Function\nmetadata: { name: x }\nspec: { runtime: nodejs20 }\n",
      "documents[0].spec.source",
      /is required/,
    ],
    [
      "an older Kyma API",
      "apiVersion: serverless.kyma-project.io/v1alpha1\nkind: Function\nmetadata: { name: x }\n",
      "documents[0].apiVersion",
      /v1alpha2/,
    ],
    [
      "a Kubeless function without a handler",
      "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: { name: x }\nspec: { runtime: python3.8, function: x }\n",
      "documents[0].spec.handler",
      /is required/,
    ],
    [
      "a name funcd cannot use",
      "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: { name: My.Func }\nspec: { runtime: python3.8, handler: a.b, function: x }\n",
      "documents[0].metadata.name",
      /not a funcd function name/,
    ],
    [
      "an OpenFaaS template funcd lacks",
      "provider: { name: openfaas }\nfunctions:\n  x: { lang: golang-http, handler: ./x }\n",
      "documents[0].functions.x.lang",
      /golang-http/,
    ],
    ["invalid YAML", "a: [1, 2\n", "documents[0]", /invalid YAML/],
  ])("%s is a problem at its path", (_label, text, path, message) => {
    const { problems } = read(text);
    expect(problems).toContainEqual({ path, message: expect.stringMatching(message) });
  });

  it("names the index of the bad document in a multi-document file", () => {
    const ok =
      "apiVersion: kubeless.io/v1beta1\nkind: Function\nmetadata: { name: a }\nspec: { runtime: python3.8, handler: a.b, function: x }\n";
    const { problems, functions } = read(
      `${ok}---\n${ok.replace("name: a", "name: b")}---\n${ok.replace("python3.8", "ruby2.7").replace("name: a", "name: c")}`,
    );
    expect(problems).toEqual([
      { path: "documents[2].spec.runtime", message: expect.stringContaining("ruby2.7") },
    ]);
    expect(functions.map((f) => f.name)).toEqual(["a", "b"]);
  });
});

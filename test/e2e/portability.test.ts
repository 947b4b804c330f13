/**
 * `funcd apply` against a real daemon: the files of examples/portability/ (Kyma, Kubeless and OpenFaaS
 * descriptions, unchanged) are applied, each function answers, a second apply changes nothing, an invalid
 * file applies nothing, --strict refuses ignored fields, and --prune removes what left the file.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Service } from "kubernetes-models/v1/Service";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { type Daemon, ROOT, removeDir, startDaemon } from "../helpers/daemon.js";

const EXAMPLES = path.join(ROOT, "examples", "portability");
let daemon: Daemon;
let scratch: string;

interface ApplyItemView {
  name: string;
  result: string;
  format: string;
  ignored: { path: string; reason: string }[];
}

beforeAll(async () => {
  daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
  scratch = mkdtempSync(path.join(os.tmpdir(), "funcd-apply-"));
  const secret = await daemon.api("PUT", "/api/v1/secrets/kyma-greeting.prefix", { value: "Dear" });
  expect(secret.status, secret.text).toBe(201);
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
  if (scratch) removeDir(scratch);
});

const applyJson = async (args: string[]) => {
  const res = await daemon.cli(["--json", "apply", ...args]);
  return { ...res, parsed: res.stdout ? (JSON.parse(res.stdout) as unknown) : undefined };
};

describe("funcd apply with the portability examples, unchanged", () => {
  it("applies the folder: every function created, ignored fields listed with reasons", async () => {
    const res = await daemon.cli(["apply", "-f", EXAMPLES]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    for (const name of ["kyma-orders", "kyma-py", "kubeless-hello", "kubeless-py", "of-node", "of-python"]) {
      expect(res.stdout).toMatch(new RegExp(`${name}\\s.*created`));
    }
    expect(res.stdout).toContain("of-node: ignored documents[0].functions.of-node.image:");
  });

  it("a Kyma inline function reads its env and its secretKeyRef variable", async () => {
    const res = await daemon.call("POST", "/function/kyma-orders", JSON.stringify({ items: [1, 2] }), {
      "content-type": "application/json",
    });
    expect(res.status, res.text).toBe(200);
    expect(res.json()).toEqual({ prefix: "Dear", currency: "EUR", items: 2, fn: "kyma-orders" });
  });

  it("a Kyma python312 function answers", async () => {
    const res = await daemon.call("POST", "/function/kyma-py", JSON.stringify({ name: "Ada" }), {
      "content-type": "application/json",
    });
    expect(res.status, res.text).toBe(200);
    expect(res.text).toBe("hello Ada from kyma-py");
  });

  it("Kubeless functions (nodejs14 → nodejs20, python3.8 → python3) answer through their named handlers", async () => {
    const node = await daemon.call("POST", "/function/kubeless-hello", JSON.stringify({ name: "Bo" }), {
      "content-type": "application/json",
    });
    expect(node.text).toBe("hello Bo from kubeless-hello");
    const py = await daemon.call("POST", "/function/kubeless-py", "ping", { "content-type": "text/plain" });
    expect(py.text).toBe("python says ping");
  });

  it("OpenFaaS node20 and python3-http handlers answer as on OpenFaaS", async () => {
    const node = await daemon.call("POST", "/function/of-node", JSON.stringify({ name: "Cy" }), {
      "content-type": "application/json",
    });
    expect(node.status, node.text).toBe(200);
    expect(node.json()).toEqual({ message: "hello Cy", method: "POST" });
    const py = await daemon.call("POST", "/function/of-python", "abc", { "content-type": "text/plain" });
    expect(py.status, py.text).toBe(201);
    expect(py.json()).toEqual({ echo: "abc!", method: "POST" });
  });

  it("applying the same files again changes nothing", async () => {
    const res = await applyJson(["-f", path.join(EXAMPLES, "kyma.yaml")]);
    expect(res.code, res.stderr).toBe(0);
    const items = (res.parsed as { items: ApplyItemView[] }).items;
    expect(items.map((i) => [i.name, i.result])).toEqual([
      ["kyma-orders", "unchanged"],
      ["kyma-py", "unchanged"],
    ]);
  });
});

describe("export and round trips", () => {
  it("funcd get -o yaml --format kyma, applied again, is the same revision", async () => {
    const before = (await daemon.api("GET", "/api/v1/functions/kyma-orders")).json<{
      activeRevision: { id: string };
    }>();
    const got = await daemon.cli(["get", "kyma-orders", "-o", "yaml", "--format", "kyma"]);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toContain("serverless.kyma-project.io/v1alpha2");
    const file = path.join(scratch, "exported-kyma.yaml");
    writeFileSync(file, got.stdout);
    const res = await applyJson(["-f", file]);
    expect(res.code, res.stderr).toBe(0);
    const item = (res.parsed as { items: (ApplyItemView & { revision: { id: string } })[] }).items[0];
    expect(item?.revision.id).toBe(before.activeRevision.id);
  });

  it("funcd get --format funcd, applied again, is the same revision", async () => {
    const before = (await daemon.api("GET", "/api/v1/functions/kubeless-hello")).json<{
      activeRevision: { id: string };
    }>();
    const got = await daemon.cli(["get", "kubeless-hello", "-o", "yaml"]);
    expect(got.code, got.stderr).toBe(0);
    const file = path.join(scratch, "exported-funcd.yaml");
    writeFileSync(file, got.stdout);
    const res = await applyJson(["-f", file]);
    expect(res.code, res.stderr).toBe(0);
    const item = (res.parsed as { items: (ApplyItemView & { revision: { id: string } })[] }).items[0];
    expect(item?.revision.id).toBe(before.activeRevision.id);
  });

  it("funcd export kubernetes writes objects that pass the Kubernetes schemas, and says what is missing", async () => {
    const dir = path.join(scratch, "k8s");
    const res = await daemon.cli(["export", "kubernetes", "kyma-orders", "of-node", "-o", dir]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toContain("has no image");
    expect(res.stderr).toContain("kubectl create secret generic kyma-orders-secrets");
    for (const name of ["kyma-orders", "of-node"]) {
      const docs = parseAllDocuments(readFileSync(path.join(dir, `${name}.yaml`), "utf8")).map(
        (d) => d.toJS() as { kind: string },
      );
      expect(docs.map((d) => d.kind)).toEqual(["Deployment", "Service", "HorizontalPodAutoscaler"]);
      expect(() => new Deployment(docs[0] as never).validate()).not.toThrow();
      expect(() => new Service(docs[1] as never).validate()).not.toThrow();
      expect(() => new HorizontalPodAutoscaler(docs[2] as never).validate()).not.toThrow();
    }
  });
});

describe("funcd apply refuses bad input and cleans up", () => {
  it("a file with one invalid document applies nothing and names the document's path", async () => {
    const file = path.join(scratch, "mixed.yaml");
    writeFileSync(
      file,
      `apiVersion: kubeless.io/v1beta1
kind: Function
metadata: { name: never-applied }
spec: { runtime: python3.8, handler: a.b, function: "def b(e, c):\\n    return 1\\n" }
---
apiVersion: kubeless.io/v1beta1
kind: Function
metadata: { name: bad-runtime }
spec: { runtime: cobol85, handler: a.b, function: x }
`,
    );
    const res = await daemon.cli(["apply", "-f", file]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("documents[1].spec.runtime");
    expect(res.stderr).toContain('runtime "cobol85" is not available');
    expect((await daemon.api("GET", "/api/v1/functions/never-applied")).status).toBe(404);

    const partial = await daemon.cli(["apply", "-f", file, "--continue-on-error"]);
    expect(partial.code).toBe(1);
    expect(partial.stdout).toMatch(/never-applied\s.*created/);
    expect(partial.stdout).toContain("skipped documents[1].spec.runtime");
  });

  it("--strict turns an ignored field into an error", async () => {
    const res = await daemon.cli(["apply", "--strict", "-f", path.join(EXAMPLES, "stack.yml")]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("documents[0].functions.of-node.image");
    expect(res.stderr).toContain("--strict");
  });

  it("--prune removes the functions a file no longer describes, and only those", async () => {
    const file = path.join(scratch, "prune.yaml");
    const fn = (name: string) => `apiVersion: kubeless.io/v1beta1
kind: Function
metadata: { name: ${name} }
spec: { runtime: nodejs20, handler: h.main, function: "module.exports = { main: () => '${name}' }" }
`;
    writeFileSync(file, `${fn("prune-a")}---\n${fn("prune-b")}`);
    expect((await daemon.cli(["apply", "-f", file])).code).toBe(0);
    writeFileSync(file, fn("prune-a"));
    const res = await applyJson(["apply", "-f", file, "--prune"].slice(1));
    expect(res.code, res.stderr).toBe(0);
    const items = (res.parsed as { items: ApplyItemView[] }).items;
    expect(items.map((i) => [i.name, i.result])).toEqual([
      ["prune-a", "unchanged"],
      ["prune-b", "pruned"],
    ]);
    expect((await daemon.api("GET", "/api/v1/functions/prune-b")).status).toBe(404);
    expect((await daemon.api("GET", "/api/v1/functions/kyma-orders")).status).toBe(200);
  });

  it("the API answers an invalid document as problem+json with each path", async () => {
    const res = await daemon.api("POST", "/api/v1/apply", { yaml: "apiVersion: v1\nkind: ConfigMap\n" });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const problem = res.json<{ code: string; errors: { path: string }[] }>();
    expect(problem.code).toBe("MANIFEST_INVALID");
    expect(problem.errors[0]?.path).toBe("documents[0].apiVersion");
  });
});

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, ROOT, removeDir, startDaemon } from "../helpers/daemon.js";

let daemon: Daemon;

beforeAll(async () => {
  daemon = await startDaemon();
  const up = await daemon.cli(["up", "-f", path.join(ROOT, "examples", "compat", "funcd.yaml")]);
  if (up.code !== 0) throw new Error(`funcd up failed:\n${up.stdout}\n${up.stderr}`);
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
});

describe("functions written for other platforms run unchanged", () => {
  it("a Kubeless function with a named handler (helloget.foo) and Kubeless context names", async () => {
    const res = await daemon.call("GET", "/function/kubeless-node");
    expect(res.status).toBe(200);
    expect(res.text).toBe("hello world from kubeless-node (timeout 30s, memory 256Mi)");
  });

  it("a Kyma function streams its answer through event.extensions.response", async () => {
    const res = await daemon.call("GET", "/function/kyma-node");
    expect(res.status).toBe(200);
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.text).toBe("streamed by kyma-node\n");
  });

  it("an AWS Lambda handler gets a payload 2.0 event and answers with statusCode/body", async () => {
    const res = await daemon.call("GET", "/function/lambda-node/some/path?name=Ada");
    expect(res.status).toBe(200);
    const body = res.json<{ hello: string; path: string; requestId: string }>();
    expect(body.hello).toBe("Ada");
    expect(body.path).toBe("/some/path");
    expect(body.requestId).toBe(res.headers["x-request-id"]);
  });

  it("a Kubeless Python function with a named handler (hello.foo)", async () => {
    const res = await daemon.call("GET", "/function/kubeless-python");
    expect(res.status).toBe(200);
    expect(res.text).toBe("hello world from kubeless-python (runtime python3)");
  });

  it("a Kyma Python function reads event['data'] and event['extensions']['request'] (runtime alias python312)", async () => {
    const res = await daemon.call("POST", "/function/kyma-python", '{"name":"Ada"}', {
      "content-type": "application/json",
    });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ greeting: "hello Ada", method: "POST" });
    const view = (await daemon.api("GET", "/api/v1/functions/kyma-python")).json<{ runtime: string }>();
    expect(view.runtime).toBe("python3");
  });

  it("an AWS Lambda Python handler gets a payload 2.0 event", async () => {
    const res = await daemon.call("GET", "/function/lambda-python/p?name=Bo");
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ hello: "Bo", path: "/p", requestId: res.headers["x-request-id"] });
  });
});

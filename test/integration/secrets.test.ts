/**
 * Secrets through a real daemon, per driver: set one over the API, deploy a Node function naming it, and
 * the function reads it as `/var/secrets/<name>` and as an env var; the value appears nowhere it must not
 * (function and revision views, logs, executions, the database file in clear, the image); changing it
 * reaches the next invocation without a redeploy; a used secret cannot be deleted; a deploy naming a
 * missing one fails and the old revision keeps answering; the file is read-only for the function; the
 * tmpfs folders go with their instances. The docker suite runs when an engine answers (under CI=true a
 * missing engine fails it).
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findSecretsBase } from "../../src/drivers/secrets/files.js";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";
import { containersOf, probeDocker, removeImagesOf } from "../helpers/docker.js";
import { eventually } from "../helpers/platform-conformance.js";

const { engine, skip: dockerSkip } = await probeDocker();

/** Reads its secret both ways, tries to write the file, and says where the folder is. */
const HANDLER = `
const fs = require("node:fs");
const path = require("node:path");
module.exports = {
  main: () => {
    const dir = process.env.FUNCD_SECRETS_DIR;
    const file = path.join(dir, "db-password");
    let write = "written";
    try { fs.writeFileSync(file, "overwritten"); } catch (err) { write = err.code; }
    let create = "created";
    try { fs.writeFileSync(path.join(dir, "new-file"), "x"); } catch (err) { create = err.code; }
    return {
      env: process.env.DB_PASSWORD ?? null,
      file: fs.readFileSync(file, "utf8"),
      dir,
      write,
      create,
      mode: (fs.statSync(file).mode & 0o777).toString(8),
      apiKey: process.env.API_KEY ?? null,
    };
  },
};`;

interface Answer {
  env: string | null;
  file: string;
  dir: string;
  write: string;
  create: string;
  mode: string;
  apiKey: string | null;
}

function suite(label: string, env: Record<string, string>, skip: string | undefined): void {
  describe.skipIf(skip !== undefined)(`secrets (${label})${skip ? ` (skipped: ${skip})` : ""}`, () => {
    const run = randomBytes(3).toString("hex");
    const fn = `sec${run}-${label}`;
    const other = `sec${run}-${label}-b`;
    const value = `s3cr3t-${randomBytes(12).toString("hex")}`;
    const second = `s3cr3t-two-${randomBytes(12).toString("hex")}`;
    let daemon: Daemon;

    const invoke = async (name = fn): Promise<Answer> => {
      const res = await daemon.call("GET", `/function/${name}`);
      expect(res.status, res.text).toBe(200);
      return res.json<Answer>();
    };
    const deploy = (name: string, spec: Record<string, unknown>, body = HANDLER) =>
      daemon.api("PUT", `/api/v1/functions/${name}`, {
        runtime: "nodejs20",
        ...spec,
        files: { "handler.js": body },
      });
    const secretsBase = () =>
      findSecretsBase(createHash("sha256").update(daemon.dataDir).digest("hex").slice(0, 12));

    beforeAll(async () => {
      daemon = await startDaemon({ env });
    }, 60_000);

    afterAll(async () => {
      await daemon?.stop();
      if (daemon) removeDir(daemon.dataDir);
      if (engine && label === "docker") {
        await removeImagesOf(engine, fn);
        await removeImagesOf(engine, other);
        await removeImagesOf(engine, `${fn}-late`);
      }
    });

    it("creates a secret (201), then replaces it (200), and lists it without its value", async () => {
      const created = await daemon.api("PUT", "/api/v1/secrets/db-password", { value: "first" });
      expect(created.status, created.text).toBe(201);
      const replaced = await daemon.api("PUT", "/api/v1/secrets/db-password", { value });
      expect(replaced.status).toBe(200);
      expect(replaced.text).not.toContain(value);
      const list = await daemon.api("GET", "/api/v1/secrets");
      expect(list.json<{ items: { name: string }[] }>().items.map((s) => s.name)).toEqual(["db-password"]);
      expect(list.text).not.toContain(value);
      const one = await daemon.api("GET", "/api/v1/secrets/db-password");
      expect(one.json()).toMatchObject({ name: "db-password", usedBy: [] });
      expect((await daemon.api("GET", "/api/v1/secrets/nope")).json()).toMatchObject({
        status: 404,
        code: "SECRET_NOT_FOUND",
      });
    });

    it("deploys a function that reads the secret as /var/secrets/<name> and as an env var", async () => {
      const res = await deploy(fn, { secrets: ["db-password"] });
      expect(res.status, res.text).toBe(201);
      const answer = await invoke();
      expect(answer.env).toBe(value);
      expect(answer.file).toBe(value);
      // Without bwrap nothing is mounted: the function finds the tmpfs folder in FUNCD_SECRETS_DIR.
      if (label === "unsandboxed") expect(answer.dir.startsWith(`${await secretsBase()}/${fn}-`)).toBe(true);
      else expect(answer.dir).toBe("/var/secrets");
      expect(answer.mode).toBe("400");
    }, 120_000);

    it("the secret file is read-only for the function: writing it or beside it fails", async () => {
      const answer = await invoke();
      expect(["EROFS", "EACCES"]).toContain(answer.write);
      expect(["EROFS", "EACCES"]).toContain(answer.create);
      expect(answer.file).toBe(value);
    });

    it("keeps the value out of the function, revision, logs and execution views and the database file", async () => {
      const views = await Promise.all([
        daemon.api("GET", `/api/v1/functions/${fn}`),
        daemon.api("GET", "/api/v1/functions"),
        daemon.api("GET", `/api/v1/functions/${fn}/revisions`),
        daemon.api("GET", `/api/v1/functions/${fn}/logs?tail=1000`),
        daemon.api("GET", `/api/v1/executions?function=${fn}`),
        daemon.api("GET", "/api/v1/secrets"),
      ]);
      for (const view of views) {
        expect(view.status).toBe(200);
        expect(view.text).not.toContain(value);
      }
      const revisions = views[2]?.json<{ items: { id: string }[] }>().items ?? [];
      for (const { id } of revisions) {
        const revision = await daemon.api("GET", `/api/v1/functions/${fn}/revisions/${id}`);
        expect(revision.status).toBe(200);
        expect(revision.text).not.toContain(value);
      }
      // The revision records keep the names (what runs), never the values.
      const db = new Database(path.join(daemon.dataDir, "funcd.db"), { readonly: true });
      const specs = db.prepare("SELECT spec FROM revisions WHERE function_name = ?").all(fn) as {
        spec: string;
      }[];
      db.close();
      expect(specs.length).toBeGreaterThan(0);
      for (const { spec } of specs) {
        expect(JSON.parse(spec)).toMatchObject({ secrets: ["db-password"] });
        expect(spec).not.toContain(value);
      }
      const files = readdirSync(daemon.dataDir).filter((f) => f.startsWith("funcd.db"));
      expect(files.length).toBeGreaterThan(0);
      for (const file of files) {
        const bytes = readFileSync(path.join(daemon.dataDir, file));
        expect(bytes.includes(Buffer.from(value)), file).toBe(false);
        expect(bytes.includes(Buffer.from("first")), file).toBe(false);
      }
      expect(existsSync(path.join(daemon.dataDir, "secrets.key"))).toBe(true);
    });

    it("writes the instance's files on a tmpfs folder of its own, never in the data dir", async () => {
      const base = await secretsBase();
      expect(base.startsWith(daemon.dataDir)).toBe(false);
      const folders = readdirSync(base);
      expect(folders.length).toBeGreaterThan(0);
      expect(folders.every((f) => f.startsWith(`${fn}-`))).toBe(true);
    });

    it("a new value reaches the next invocation without a redeploy (the instances are recycled)", async () => {
      const before = await daemon.api("GET", `/api/v1/functions/${fn}`);
      const revision = before.json<{ activeRevision: { id: string } }>().activeRevision.id;
      const res = await daemon.api("PUT", "/api/v1/secrets/db-password", {
        base64: Buffer.from(second).toString("base64"),
      });
      expect(res.status).toBe(200);
      expect(res.json()).toMatchObject({ usedBy: [fn], recycled: [fn] });
      const answer = await invoke();
      expect(answer.env).toBe(second);
      expect(answer.file).toBe(second);
      const after = await daemon.api("GET", `/api/v1/functions/${fn}`);
      expect(after.json<{ activeRevision: { id: string } }>().activeRevision.id).toBe(revision);
    }, 60_000);

    it("refuses to delete a secret a function uses (409 with usedBy)", async () => {
      const res = await daemon.api("DELETE", "/api/v1/secrets/db-password");
      expect(res.status).toBe(409);
      expect(res.json()).toMatchObject({ code: "SECRET_IN_USE", usedBy: [fn] });
      expect((await daemon.api("GET", "/api/v1/secrets/db-password")).status).toBe(200);
    });

    it("a deploy naming a missing secret fails with SECRET_NOT_FOUND and the old revision keeps answering", async () => {
      const res = await deploy(fn, { secrets: ["db-password", "nope"] }, `${HANDLER}\n// v2`);
      expect(res.status).toBe(404);
      expect(res.json()).toMatchObject({ code: "SECRET_NOT_FOUND", missing: ["nope"] });
      expect(res.json<{ detail: string }>().detail).toContain('"nope"');
      const answer = await invoke();
      expect(answer.file).toBe(second);
    });

    it("a secret deleted while a deploy naming it is under way fails that deploy; nothing switches", async () => {
      const late = `${fn}-late`;
      expect((await daemon.api("PUT", "/api/v1/secrets/short-lived", { value: "x" })).status).toBe(201);
      // The handler takes 1.5 s to load, so the delete lands while the deploy proves its instance — when
      // no function uses the secret yet, which is why the delete itself is allowed.
      const slow = `const until = Date.now() + 1500;\nwhile (Date.now() < until) {}\n${HANDLER}`;
      const pending = deploy(late, { secrets: ["short-lived"] }, slow);
      await sleep(400);
      expect((await daemon.api("DELETE", "/api/v1/secrets/short-lived")).status).toBe(204);
      const res = await pending;
      expect(res.status, res.text).toBe(404);
      expect(res.json()).toMatchObject({ code: "SECRET_NOT_FOUND" });
      expect((await daemon.api("GET", `/api/v1/functions/${late}`)).status).toBe(404);
    });

    it("the function's own env wins over a secret's variable; the file is still there", async () => {
      expect((await daemon.api("PUT", "/api/v1/secrets/api.key", { value: "from-secret" })).status).toBe(201);
      const res = await deploy(other, {
        secrets: ["db-password", "api.key"],
        env: { DB_PASSWORD: "mine" },
      });
      expect(res.status, res.text).toBe(201);
      const answer = await invoke(other);
      expect(answer.env).toBe("mine");
      expect(answer.file).toBe(second);
      expect(answer.apiKey).toBe("from-secret");
    }, 120_000);

    if (label === "docker") {
      it("mounts the folder read-only and keeps the value out of the image", async () => {
        if (!engine) throw new Error("no Docker engine");
        const id = readFileSync(path.join(daemon.dataDir, "daemon-id"), "utf8").trim();
        const [container] = (await containersOf(engine, id, fn)).filter((c) => c.state === "running");
        expect(container).toBeDefined();
        const details = await engine.docker.getContainer(container?.id ?? "").inspect();
        const mount = details.Mounts.find((m) => m.Destination === "/var/secrets");
        expect(mount).toMatchObject({ Type: "bind", RW: false });
        const image = await engine.docker.getImage(details.Image).inspect();
        expect(JSON.stringify(image)).not.toContain(second);
        expect(JSON.stringify(image.Config.Env)).not.toContain("DB_PASSWORD");
      });
    }

    it("the CLI sets a secret from stdin, lists it and removes it", async () => {
      const set = await daemon.cli(["secret", "set", "from-cli"], { input: "typed-value\n" });
      expect(set.code, set.stderr).toBe(0);
      expect(set.stdout).toContain("Set secret from-cli (11 bytes)");
      const list = await daemon.cli(["secret", "list"]);
      expect(list.stdout).toMatch(/from-cli/);
      expect(list.stdout).toMatch(new RegExp(`db-password +${fn}`));
      expect(list.stdout).not.toContain("typed-value");
      const used = await daemon.cli(["secret", "rm", "db-password"]);
      expect(used.code).toBe(1);
      expect(used.stderr).toContain("Secret in use");
      const rm = await daemon.cli(["secret", "rm", "from-cli"]);
      expect(rm.code, rm.stderr).toBe(0);
      expect((await daemon.api("GET", "/api/v1/secrets/from-cli")).status).toBe(404);
    });

    it("deleting the functions removes their secret folders; then the secret can go", async () => {
      for (const name of [fn, other])
        expect((await daemon.api("DELETE", `/api/v1/functions/${name}`)).status).toBe(204);
      const base = await secretsBase();
      await eventually(async () => expect(readdirSync(base)).toEqual([]));
      expect((await daemon.api("DELETE", "/api/v1/secrets/db-password")).status).toBe(204);
    });

    it("shutting the daemon down removes its tmpfs folder", async () => {
      const base = await secretsBase();
      expect(existsSync(base)).toBe(true);
      await daemon.stop();
      expect(existsSync(base)).toBe(false);
    });
  });
}

suite("process", {}, undefined);
// The process driver's fallback without bubblewrap: the real tmpfs folder, named by FUNCD_SECRETS_DIR.
suite("unsandboxed", { FUNCD_SANDBOX: "none" }, undefined);
suite("docker", { FUNCD_DRIVER: "docker" }, dockerSkip);

describe("secret files after a crash of the daemon", () => {
  it("a daemon killed with SIGKILL leaves its instances' secret files; the next start removes them", async () => {
    const first = await startDaemon();
    const base = await findSecretsBase(createHash("sha256").update(first.dataDir).digest("hex").slice(0, 12));
    try {
      expect((await first.api("PUT", "/api/v1/secrets/token", { value: "crash-value" })).status).toBe(201);
      const res = await first.api("PUT", "/api/v1/functions/crashy", {
        runtime: "nodejs20",
        secrets: ["token"],
        files: { "handler.js": HANDLER.replaceAll("db-password", "token") },
      });
      expect(res.status, res.text).toBe(201);
      expect(readdirSync(base).length).toBeGreaterThan(0);
      await first.stop("SIGKILL");
      expect(readdirSync(base).length).toBeGreaterThan(0);
      const again = await startDaemon({ dataDir: first.dataDir });
      try {
        expect(readdirSync(base)).toEqual([]);
        const answer = (await again.call("GET", "/function/crashy")).json<Answer>();
        expect(answer.file).toBe("crash-value");
      } finally {
        await again.stop();
      }
      expect(existsSync(base)).toBe(false);
    } finally {
      await first.stop();
      removeDir(first.dataDir);
    }
  }, 60_000);
});

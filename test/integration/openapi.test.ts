import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, send, startDaemon } from "../helpers/daemon.js";

/** docs/openapi.json is generated (`npm run openapi`); this keeps it equal to what the daemon serves. */
describe("the committed OpenAPI document", () => {
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
  }, 60_000);
  afterAll(async () => {
    await daemon?.stop();
    if (daemon) removeDir(daemon.dataDir);
  });

  it("docs/openapi.json is what /api/docs/json serves (run `npm run build && npm run openapi` after API changes)", async () => {
    const served = (await send(`${daemon.adminUrl}/api/docs/json`, "GET")).json();
    const committed: unknown = JSON.parse(
      readFileSync(path.join(import.meta.dirname, "..", "..", "docs", "openapi.json"), "utf8"),
    );
    expect(served).toEqual(committed);
  });
});

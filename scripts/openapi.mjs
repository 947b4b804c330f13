#!/usr/bin/env node
// Writes docs/openapi.json: the control API's OpenAPI document, as a freshly built daemon serves it at
// /api/docs/json. test/integration/openapi.test.ts fails when the committed file differs from what the
// daemon serves, so API changes and their document land in the same commit.
//
//   npm run build && npm run openapi
import { writeFileSync } from "node:fs";
import path from "node:path";
import { request } from "undici";
import { ROOT, startDaemon } from "../bench/lib/daemon.mjs";

const daemon = await startDaemon({ env: { FUNCD_LOG_LEVEL: "error", FUNCD_POOL_SIZE: "0" } });
try {
  const res = await request(`${daemon.adminUrl}/api/docs/json`);
  if (res.statusCode !== 200) throw new Error(`/api/docs/json answered ${res.statusCode}`);
  const document = await res.body.json();
  const file = path.join(ROOT, "docs", "openapi.json");
  writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  process.stdout.write(
    `wrote ${path.relative(ROOT, file)} (${Object.keys(document.paths ?? {}).length} paths)\n`,
  );
} finally {
  await daemon.stop();
}

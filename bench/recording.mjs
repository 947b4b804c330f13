/**
 * Sync throughput with and without execution records (issue 5: "records are written off the hot path in
 * batches, so sync throughput does not drop measurably"). Two daemons side by side, one with
 * FUNCD_RECORD_EXECUTIONS=false; the same warm Node hello is loaded through each in alternating rounds
 * (so drift on a shared machine hits both alike), and the records written are counted afterwards, so the
 * "with" side is known to have recorded every request.
 */
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { startDaemon } from "./lib/daemon.mjs";
import { runLoad } from "./lib/load.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { RUNTIMES } from "./lib/runtimes.mjs";
import { count, percent, summarize } from "./lib/stats.mjs";

export const name = "recording";
export const title = "Sync throughput with and without execution recording";

const SPEC = { files: RUNTIMES.node.files(), concurrency: 256, scale: { min: 1, max: 1 } };
/** The drop below which we call it "not measurable": run-to-run spread of one daemon is about this. */
const TARGET_DROP = 0.05;

async function ready(daemon) {
  await daemon.deploy("hello", SPEC);
  const first = await daemon.invoke("/function/hello");
  if (first.status !== 200) throw new Error(`/function/hello answered ${first.status}: ${first.text}`);
}

/** Records of `hello` in the daemon's store, counted in the SQLite file itself (read-only). */
function recordedCount(daemon) {
  const db = new Database(path.join(daemon.dataDir, "funcd.db"), { readonly: true, fileMustExist: true });
  try {
    return db.prepare("SELECT count(*) AS n FROM executions WHERE function_name = 'hello'").get().n;
  } finally {
    db.close();
  }
}

export async function run({ quick, log }) {
  const rounds = quick ? 2 : 5;
  const seconds = quick ? 3 : 8;
  const connections = 64;
  const cleanup = cleanupStack();
  const raw = { rounds, seconds, connections, with: [], without: [] };
  const notes = [];
  try {
    const withRec = await startDaemon({ env: { FUNCD_RECORD_EXECUTIONS: "true", FUNCD_LOG_LEVEL: "error" } });
    cleanup.defer(withRec.stop);
    const without = await startDaemon({
      env: { FUNCD_RECORD_EXECUTIONS: "false", FUNCD_LOG_LEVEL: "error" },
    });
    cleanup.defer(without.stop);
    await ready(withRec);
    await ready(without);
    for (const d of [withRec, without]) await runLoad(`${d.url}/function/hello`, { connections, seconds: 2 });
    let requestsWith = 0;
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first, so neither always runs on a machine the other just heated.
      const order = round % 2 === 0 ? [withRec, without] : [without, withRec];
      for (const d of order) {
        const key = d === withRec ? "with" : "without";
        log(`round ${round + 1}/${rounds}: ${key} recording, ${connections} connections, ${seconds} s`);
        const r = await runLoad(`${d.url}/function/hello`, { connections, seconds });
        raw[key].push(r.rps);
        if (key === "with") requestsWith += r.requests ?? 0;
        // Let the "with" daemon's writer drain between runs, as idle moments do in real life.
        await sleep(1500);
      }
    }
    const w = summarize(raw.with);
    const wo = summarize(raw.without);
    const drop = 1 - w.median / wo.median;
    raw.drop = drop;
    await sleep(3000);
    let recorded;
    try {
      recorded = recordedCount(withRec);
    } catch (err) {
      notes.push(`Could not count the records: ${err.message}`);
    }
    raw.recorded = recorded;
    const rows = [
      ["without recording (baseline)", count(wo.median), count(wo.min), count(wo.max), "–"],
      ["with recording", count(w.median), count(w.min), count(w.max), percent(-drop * 100, 1)],
    ];
    notes.push(
      `${rounds} alternating rounds of ${seconds} s per daemon, wrk with ${connections} connections on /function/hello ` +
        "(one warm Node instance each, concurrency 256). min/max are over the rounds.",
      recorded !== undefined
        ? `The recording daemon stored ${count(recorded)} execution records` +
            (requestsWith
              ? ` for the ${count(requestsWith)} requests wrk counted in measured rounds (plus warm-up)`
              : "") +
            "."
        : "The records stored were not counted.",
    );
    return {
      summary: [
        {
          target: `sync throughput with recording within ${percent(TARGET_DROP * 100)} of without (median of rounds)`,
          measured: `${count(w.median)} vs ${count(wo.median)} req/s (${percent(-drop * 100, 1)})`,
          met: drop <= TARGET_DROP,
        },
      ],
      sections: [{ table: { header: ["case", "median req/s", "min", "max", "change"], rows }, notes }],
      raw,
    };
  } finally {
    await cleanup.run();
  }
}

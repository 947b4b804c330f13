/** The platform conformance suite (test/helpers/platform-conformance.ts) on a daemon with the process driver. */
import { runPlatformConformance } from "../helpers/platform-conformance.js";

runPlatformConformance({ name: "process driver", env: { FUNCD_DRIVER: "process" } });

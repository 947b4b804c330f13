/** The process driver: sandboxed OS processes, one per instance. */

export type { MemoryEnforcement } from "./memory.js";
export { ProcessDriver, type ProcessDriverOptions } from "./process-driver.js";
export { probeBwrap, type SandboxMode, uidFor } from "./sandbox.js";

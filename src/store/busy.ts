/**
 * Whether a store error is a lock conflict that may pass: SQLite's SQLITE_BUSY (another connection held the
 * write lock for longer than `busy_timeout`) or SQLITE_LOCKED, with their extended codes. Callers that can
 * wait (the async queue) retry these; anything else is a real failure.
 */
export function isStoreBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

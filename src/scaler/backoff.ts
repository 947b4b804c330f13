/** Delay before the next instance start after `crashes` consecutive crashes. */
export type BackoffPolicy = (crashes: number) => number;

/**
 * The first crash restarts at once (a single bad request should not cost the
 * next caller a wait); after that 1 s, 2 s, 4 s … capped at 30 s.
 */
export const crashBackoff: BackoffPolicy = (crashes) => {
  if (crashes <= 1) return 0;
  return Math.min(30_000, 1000 * 2 ** (crashes - 2));
};

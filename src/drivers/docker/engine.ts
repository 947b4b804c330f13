/** Moved to `../common/engine.ts` (the swarm driver shares it); kept so existing imports keep working. */
export * from "../common/engine.js";

/** Moved to agent/src/steps.ts (shared by boot and convert); this re-export keeps old imports working. */
export * from "../steps.ts";

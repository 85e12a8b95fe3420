/**
 * Moved: the provider table schemas are config/providers/<name>.ts, registered in
 * config/providers/index.ts. This re-export keeps old imports working during the refactor.
 */
export * from "./providers/index.ts";

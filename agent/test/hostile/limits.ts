/**
 * Shared helper of the hostile-input tests: run a crafted case and assert it ended within a wall
 * time and an RSS growth bound. Bounds are generous (CI is a loaded 2-core box): they catch
 * "reads 1 GiB" or "hangs for a minute", not small regressions.
 */
import { expect } from "bun:test";

export async function bounded<T>(fn: () => Promise<T>, limits: { ms: number; mib: number }): Promise<T> {
  Bun.gc(true);
  const rss = process.memoryUsage.rss();
  const started = performance.now();
  try {
    return await fn();
  } finally {
    const ms = performance.now() - started;
    const grownMib = (process.memoryUsage.rss() - rss) / (1024 * 1024);
    expect(ms).toBeLessThan(limits.ms);
    expect(grownMib).toBeLessThan(limits.mib);
  }
}

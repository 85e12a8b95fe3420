/**
 * A child's peak RSS as Bun reports it (wait4's ru_maxrss, `resourceUsage.maxRSS`) starts from this
 * process's own peak: posix_spawn runs the child on the parent's memory until exec, and exec keeps
 * the larger peak (the kernel's setmax_mm_hiwater_rss). So one earlier test that briefly held a
 * gigabyte made every later child look a gigabyte large. Resetting this process's peak to its
 * current RSS (/proc/self/clear_refs, "5") just before spawning leaves max(our RSS now, the child's
 * own peak): still an upper bound on the child, without an earlier test's allocation in it.
 */
import { writeFileSync } from "node:fs";

export function resetPeakRss(): void {
  writeFileSync("/proc/self/clear_refs", "5");
}

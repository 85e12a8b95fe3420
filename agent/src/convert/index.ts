/**
 * `cryptpilot-fde convert`: a plain Linux disk image -> the cryptpilot FDE layout. Works on hosts
 * without device-mapper: the rootfs is shrunk, verity-formatted and (optionally) LUKS2-encrypted
 * as files, LVM metadata is written without activation, and LV data lands at computed offsets.
 * The output is assembled as DST.partial and renamed only when everything succeeded.
 *
 * plan.ts holds the order of the steps (steps/*.ts) and when each runs; context.ts what they
 * share; this file sets up a run (work directory, cleanup on exit and on SIGINT/SIGTERM).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runSteps } from "../steps.ts";
import { Cleanup } from "./cleanup.ts";
import { newContext } from "./context.ts";
import { requireRoot } from "./guest.ts";
import type { ConvertOptions } from "./options.ts";
import { plan, runnerSteps } from "./plan.ts";

export type { ConvertOptions } from "./options.ts";

export async function convert(opts: ConvertOptions): Promise<void> {
  requireRoot();
  const steps = plan(opts);
  const cleanup = new Cleanup();
  const work = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), "cryptpilot-convert-"));
  cleanup.push("work dir", () => rm(work, { recursive: true, force: true }));
  const ctx = newContext(opts, cleanup, work, steps);
  if (!opts.device) cleanup.push("partial output", () => rm(ctx.partial, { force: true }));
  const onSignal = () => {
    void cleanup.runAll().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await runSteps("convert", runnerSteps(steps, opts), ctx);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup.runAll();
  }
}

import { expectFdeRoot } from "../lib/checks.ts";
import { withLvLoop } from "../lib/disk.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { shText } from "../lib/proc.ts";
import { defineScenario, type ScenarioContext } from "../lib/scenario.ts";

// overlayfs + integrity: the first boot wipes the whole delta for its integrity tags, a long
// window between the LUKS2 header (subsystem cryptpilot-initializing) and the finished volume.
const fde: FdeOptions = {
  deltaLocation: "disk-persist",
  deltaBackend: "overlayfs",
  integrity: true,
  encryptRootfs: false,
};

/** LUKS2 subsystem of the delta LV, read on the host (cryptsetup luksDump needs no device-mapper). */
async function deltaSubsystem(ctx: ScenarioContext, disk: string): Promise<string | undefined> {
  const dump = await withLvLoop(disk, "delta", (loop) =>
    shText(["cryptsetup", "luksDump", loop]).catch(() => ""),
  );
  const subsystem = dump?.match(/^Subsystem:\s*(\S+)/m)?.[1];
  ctx.log(`delta LUKS2 subsystem after the kill: ${subsystem ?? "(no LUKS2 header)"}`);
  return subsystem;
}

export default defineScenario({
  description:
    "first boot killed while the delta is being formatted; the next boot re-initialises it and boots",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    // Kill a little after the stage announces the format; the header must already be written.
    let subsystem: string | undefined;
    for (const delayMs of [8000, 20000]) {
      const killed = await ctx.boot(disk, {
        label: `killed-${delayMs / 1000}s`,
        initrdFiles,
        killOn: { pattern: /initialising: no LUKS2 header/, delayMs },
      });
      const failed = killed.serial.match(/(cryptpilot-fde \S+ failed at step [^\n]*)/)?.[1];
      ctx.check(failed === undefined, `the first boot failed on its own before the kill: ${failed}`, killed);
      ctx.check(
        killed.end === "killed",
        `the first boot was not killed during the delta format (${killed.end})`,
        killed,
      );
      subsystem = await deltaSubsystem(ctx, disk);
      if (subsystem !== undefined) break;
    }
    ctx.check(
      subsystem === "cryptpilot-initializing",
      `after the kill the delta header should say cryptpilot-initializing, not ${subsystem ?? "(none)"}`,
    );

    const recovered = await ctx.boot(disk, { label: "recovered", quick: true, initrdFiles });
    ctx.check(
      /a previous initialisation was interrupted/.test(recovered.serial),
      "the stage did not report the interrupted initialisation",
      recovered,
    );
    expectFdeRoot(ctx, recovered, fde);
    ctx.check(
      recovered.markers.get("previous-boots") === "",
      "boot markers from a never-finished boot",
      recovered,
    );
    ctx.check(
      (await deltaSubsystem(ctx, disk)) === "cryptpilot",
      "the delta is not marked initialised (cryptpilot) after the good boot",
    );
  },
});

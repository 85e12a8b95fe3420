import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import {
  checkEventLog,
  eventLogSourceFiles,
  predictReferenceValues,
  withMeasuringTpm,
} from "../lib/eventlog.ts";
import { ENCRYPTED_IMAGE, fdeToml, rootfsKeyFor } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde = ENCRYPTED_IMAGE;

// Boot 2 is also the GRUB reference-value check (issue 5): show-reference-value's predictions for
// this disk appear in the TCG event log OVMF, shim and GRUB write while booting it with a swtpm.
export default defineScenario({
  description:
    "dm-snapshot, delta on disk (wiped each boot), encrypted rootfs: boot 1 (direct) reaches a running multi-user system; disk enlarged; boot 2 through OVMF + shim + GRUB with a TPM, whose event log holds show-reference-value's predictions",
  timeoutSec: 2400,
  async run(ctx) {
    const source = await ctx.sourceDisk({ files: eventLogSourceFiles(ctx, "grub") });
    const disk = await ctx.convert({ source, fde: fdeToml(fde), rootfsKey: rootfsKeyFor(fde) });
    const prediction = predictReferenceValues(ctx, disk);

    const first = await ctx.boot(disk, { label: "first" });
    expectFdeRoot(ctx, first, fde);
    const state = first.markers.get("system-running");
    ctx.check(
      state === "running",
      `systemctl is-system-running says '${state}' (failed units: ${first.markers.get("failed-units")})`,
      first,
    );

    const second = await withMeasuringTpm(ctx, (extraQemuArgs) =>
      bootAfterGrow(ctx, disk, first, fde, { label: "grub-after-grow", uefi: true, extraQemuArgs }),
    );
    checkEventLog(ctx, second, prediction, "grub");
  },
});

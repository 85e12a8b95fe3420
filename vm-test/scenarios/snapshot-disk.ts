import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import { diskFor, ENCRYPTED_IMAGE } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde = ENCRYPTED_IMAGE;

export default defineScenario({
  description:
    "dm-snapshot, delta on disk (wiped each boot), encrypted rootfs: boot 1 (direct) reaches a running multi-user system; disk enlarged; boot 2 through OVMF + shim + GRUB",
  async run(ctx) {
    const { disk } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first" });
    expectFdeRoot(ctx, first, fde);
    const state = first.markers.get("system-running");
    ctx.check(
      state === "running",
      `systemctl is-system-running says '${state}' (failed units: ${first.markers.get("failed-units")})`,
      first,
    );

    await bootAfterGrow(ctx, disk, first, fde, { label: "grub-after-grow", uefi: true });
  },
});

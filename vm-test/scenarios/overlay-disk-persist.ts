import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

// With integrity: the grown part of the delta is wiped (integrity tags) before ext4 grows into it.
const fde: FdeOptions = {
  deltaLocation: "disk-persist",
  deltaBackend: "overlayfs",
  integrity: true,
  encryptRootfs: true,
};

export default defineScenario({
  description:
    "overlayfs, persistent integrity delta, encrypted rootfs: data survives reboots; the upper filesystem grows with an enlarged disk and is intact on the next boot",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    const grown = await bootAfterGrow(ctx, disk, first, fde, {
      label: "after-grow",
      quick: true,
      initrdFiles,
    });

    // The boot after the grow checks the grown filesystem (e2fsck -p stops the boot on errors).
    const third = await ctx.boot(disk, { label: "after-grow-again", quick: true, initrdFiles });
    expectFdeRoot(ctx, third, fde);
    ctx.check(
      third.markers.get("previous-boots") === "1,2",
      `data of the boots before is gone (previous-boots=${third.markers.get("previous-boots")})`,
      third,
    );
    ctx.check(
      third.markers.get("root-size") === grown.markers.get("root-size"),
      `the upper filesystem changed size without a grow (${grown.markers.get("root-size")} -> ${third.markers.get("root-size")})`,
      third,
    );
  },
});

import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { diskFor, type FdeOptions, fdeToml } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

// The two RAM layouts never write to the disk, so one disk serves both: boot 1 with dm-snapshot
// on a zram COW, boot 2 with overlayfs on tmpfs. Boot 2 must not see boot 1's file.
const snapshot: FdeOptions = { deltaLocation: "ram", deltaBackend: "dm-snapshot", encryptRootfs: true };
const overlay: FdeOptions = { deltaLocation: "ram", deltaBackend: "overlayfs", encryptRootfs: true };

export default defineScenario({
  description:
    "delta in RAM, encrypted rootfs: dm-snapshot with a zram COW, then overlayfs with a tmpfs upper layer; writable, nothing survives the reboot",
  async run(ctx) {
    const { disk } = await diskFor(ctx, snapshot);
    const files = (fde: FdeOptions) => ({ "/etc/cryptpilot/fde.toml": fdeToml(fde) });
    const first = await ctx.boot(disk, { label: "snapshot-zram", quick: true, initrdFiles: files(snapshot) });
    expectFdeRoot(ctx, first, snapshot);
    ctx.check(
      [...first.markers.blockSizes().keys()].some((n) => n.startsWith("zram")),
      "no zram device",
      first,
    );
    const second = await ctx.boot(disk, { label: "overlay-tmpfs", quick: true, initrdFiles: files(overlay) });
    expectFdeRoot(ctx, second, overlay);
    expectPersistence(ctx, first, second, overlay);
  },
});

import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "disk-persist", deltaBackend: "overlayfs", encryptRootfs: true };

export default defineScenario({
  description: "overlayfs, persistent delta, encrypted rootfs: data survives a reboot on an enlarged disk",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    await bootAfterGrow(ctx, disk, first, fde, { label: "after-grow", quick: true, initrdFiles });
  },
});

import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "ram", deltaBackend: "overlayfs", encryptRootfs: true };

export default defineScenario({
  description:
    "overlayfs with a tmpfs upper layer (delta in RAM), encrypted rootfs: writable, nothing survives a reboot",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    const second = await ctx.boot(disk, { label: "second", quick: true, initrdFiles });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
  },
});

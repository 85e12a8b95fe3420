import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "ram", deltaBackend: "dm-snapshot", encryptRootfs: true };

export default defineScenario({
  description:
    "dm-snapshot with a zram COW (delta in RAM), encrypted rootfs: writable, nothing survives a reboot",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    ctx.check(
      [...first.markers.blockSizes().keys()].some((n) => n.startsWith("zram")),
      "no zram device",
      first,
    );
    const second = await ctx.boot(disk, { label: "second", quick: true, initrdFiles });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
  },
});

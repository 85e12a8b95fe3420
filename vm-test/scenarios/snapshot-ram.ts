import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { type FdeOptions, fdeToml, rootfsKeyFor } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "ram", deltaBackend: "dm-snapshot", encryptRootfs: true };

export default defineScenario({
  description:
    "dm-snapshot with a zram COW (delta in RAM), encrypted rootfs: writable, nothing survives a reboot",
  async run(ctx) {
    const disk = await ctx.convert({ fde: fdeToml(fde), rootfsKey: rootfsKeyFor(fde) });
    const first = await ctx.boot(disk, { label: "first", quick: true });
    expectFdeRoot(ctx, first, fde);
    ctx.check(
      [...first.markers.blockSizes().keys()].some((n) => n.startsWith("zram")),
      "no zram device",
      first,
    );
    const second = await ctx.boot(disk, { label: "second", quick: true });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
  },
});

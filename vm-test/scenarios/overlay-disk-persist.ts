import { deltaSize, expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { growImage } from "../lib/disk.ts";
import { diskFor, type FdeOptions } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "disk-persist", deltaBackend: "overlayfs", encryptRootfs: true };

export default defineScenario({
  description: "overlayfs, persistent delta, encrypted rootfs: data survives a reboot on an enlarged disk",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    await growImage(disk, 512);
    const second = await ctx.boot(disk, { label: "after-grow", quick: true, initrdFiles });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
    ctx.check(
      deltaSize(second) > deltaSize(first) + 256 * 2 ** 20,
      `the delta did not grow with the disk (${deltaSize(first)} -> ${deltaSize(second)} bytes)`,
      second,
    );
    const rootGrew = Number(second.markers.get("root-size")) > Number(first.markers.get("root-size"));
    ctx.check(rootGrew, "the overlay's upper filesystem did not grow with the delta", second);
  },
});

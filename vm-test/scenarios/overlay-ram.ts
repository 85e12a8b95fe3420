import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { type FdeOptions, fdeToml, rootfsKeyFor } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = { deltaLocation: "ram", deltaBackend: "overlayfs", encryptRootfs: true };

export default defineScenario({
  description:
    "overlayfs with a tmpfs upper layer (delta in RAM), encrypted rootfs, UKI boot through OVMF: writable, nothing survives a reboot",
  async run(ctx) {
    const disk = await ctx.convert({ fde: fdeToml(fde), rootfsKey: rootfsKeyFor(fde), uki: true });
    const first = await ctx.boot(disk, { label: "uki-first", uefi: true });
    expectFdeRoot(ctx, first, fde);
    const second = await ctx.boot(disk, { label: "uki-second", uefi: true });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);
  },
});

import { expectFdeRoot, expectPersistence } from "../lib/checks.ts";
import { diskFor, type FdeOptions, fdeToml } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

const fde: FdeOptions = {
  deltaLocation: "disk",
  deltaBackend: "overlayfs",
  // Without integrity: re-formatting an integrity delta wipes all of it on every boot (~85 s per
  // boot under TCG); overlayfs + integrity is booted by killed-first-format, dm-snapshot +
  // integrity by snapshot-disk-persist.
  integrity: false,
  encryptRootfs: false,
};

export default defineScenario({
  description:
    "overlayfs, delta on disk (re-formatted each boot), plain rootfs; then a broken fde.toml in the initrd stops the boot with the config error",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true, initrdFiles });
    expectFdeRoot(ctx, first, fde);
    const second = await ctx.boot(disk, { label: "second", quick: true, initrdFiles });
    expectFdeRoot(ctx, second, fde);
    expectPersistence(ctx, first, second, fde);

    const broken = fdeToml(fde).replace('delta_location = "disk"', 'delta_location = "sideways"');
    const bad = await ctx.boot(disk, {
      label: "broken-config",
      quick: true,
      initrdFiles: { "/etc/cryptpilot/fde.toml": broken },
    });
    ctx.expectStopped(bad, /fde\.toml.*delta_location/, "the fde.toml error naming the field");
  },
});

import { flipByte, logicalVolumes } from "../lib/disk.ts";
import { diskFor, PLAIN_IMAGE } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

export default defineScenario({
  description: "one byte flipped in the rootfs data: dm-verity error on the console, no switch-root",
  async run(ctx) {
    const { disk } = await diskFor(ctx, PLAIN_IMAGE);
    const rootfs = (await logicalVolumes(disk)).find((lv) => lv.name === "rootfs");
    ctx.check(rootfs !== undefined, "no rootfs LV in the converted image");
    // A byte of the ext4 superblock (4 KiB block 0): every boot reads it when the root is mounted.
    const offset = rootfs!.offset + 1024 + 0x78;
    ctx.log(`flipping the byte at ${offset} (rootfs LV + ${offset - rootfs!.offset})`);
    await flipByte(disk, offset);
    const boot = await ctx.boot(disk, { label: "tampered", quick: true });
    ctx.expectStopped(boot, /verity.*(corrupted|error)|corrupted.*verity/i, "a dm-verity corruption error");
  },
});

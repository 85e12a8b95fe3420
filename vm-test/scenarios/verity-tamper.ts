import { flipByte, logicalVolumes } from "../lib/disk.ts";
import { diskFor, type FdeOptions, PASSPHRASE_KEY, PLAIN_IMAGE } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

// The delta gets a short, passphrase-style key: this boot is the one that formats and opens a
// LUKS2 volume with cryptsetup's argon2id (the other scenarios' keys get the minimal pbkdf2).
const fde: FdeOptions = { ...PLAIN_IMAGE, deltaKey: PASSPHRASE_KEY };

export default defineScenario({
  description:
    "one byte flipped in the rootfs data: dm-verity error on the console, what the stage opened is closed, no shell, power-off; the delta before it is formatted with a passphrase-style key (argon2id)",
  async run(ctx) {
    const { disk, initrdFiles } = await diskFor(ctx, fde);
    const rootfs = (await logicalVolumes(disk)).find((lv) => lv.name === "rootfs");
    ctx.check(rootfs !== undefined, "no rootfs LV in the converted image");
    // A byte of the ext4 superblock (4 KiB block 0): every boot reads it when the root is mounted.
    const offset = rootfs!.offset + 1024 + 0x78;
    ctx.log(`flipping the byte at ${offset} (rootfs LV + ${offset - rootfs!.offset})`);
    await flipByte(disk, offset);
    const boot = await ctx.boot(disk, { label: "tampered", quick: true, initrdFiles });
    ctx.expectStopped(boot, /verity.*(corrupted|error)|corrupted.*verity/i, "a dm-verity corruption error");
    // What the stage had opened before the error is closed again before the power-off.
    ctx.check(
      /cryptpilot-fde: closed .*delta, rootfs_verity, volume group cryptpilot/.test(boot.serial),
      "the failed stage did not close the delta, the verity device and the VG before powering off",
      boot,
    );
    ctx.check(
      /key slot KDF: argon2id/.test(boot.serial) && /unlocking the delta volume .*done/.test(boot.serial),
      "the delta was not formatted and opened with argon2id (the passphrase-style key) before the verity error",
      boot,
    );
  },
});

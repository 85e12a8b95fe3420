import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nullKeyslotAttack, readJson } from "../../agent/testkit/luks-craft.ts";
import { bootAfterGrow, expectFdeRoot } from "../lib/checks.ts";
import { logicalVolumes, readBytes, writeBytes } from "../lib/disk.ts";
import { DELTA_KEY, diskFor, keyOverride, PLAIN_IMAGE } from "../lib/fde.ts";
import { defineScenario } from "../lib/scenario.ts";

/** The LUKS2 header area cryptsetup writes by default: two 16 KiB JSON copies and the keyslots. */
const LUKS2_HEADER_BYTES = 16 * 1024 * 1024;

/**
 * HEADER with keyslot 0 turned into a cipher_null slot that opens with any key and holds a volume
 * key the host chose (the CVE-2025-59054 class of attack), checksums recomputed.
 */
function swappedHeader(header: Buffer): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "cptest-hdr-"));
  try {
    const file = join(dir, "hdr.img");
    writeFileSync(file, header);
    // A volume key of the size the header had (96 bytes with integrity), so only the cipher is off.
    nullKeyslotAttack(file, Buffer.alloc(Number(readJson(file).keyslots["0"].key_size), 0x41));
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fde = PLAIN_IMAGE;

export default defineScenario({
  description:
    "dm-snapshot, persistent delta with integrity, plain rootfs: data survives a reboot on an enlarged disk; a wrong delta key, then a delta header swapped for a cipher_null one (header policy), stop the boot and the data is still there with the right key and header",
  async run(ctx) {
    const { disk } = await diskFor(ctx, fde);
    const first = await ctx.boot(disk, { label: "first", quick: true });
    expectFdeRoot(ctx, first, fde);

    await bootAfterGrow(ctx, disk, first, fde, { label: "after-grow", quick: true });

    const wrong = await ctx.boot(disk, {
      label: "wrong-key",
      quick: true,
      append: [keyOverride(DELTA_KEY, "not-the-delta-key")],
    });
    ctx.expectStopped(wrong, /cannot open the persistent delta volume/, "the delta unlock error");

    // The host swaps in a header whose keyslot any key opens: refused by the header policy before
    // the key is fetched, the delta untouched; with the real header back it boots with its data.
    const delta = (await logicalVolumes(disk)).find((lv) => lv.name === "delta");
    ctx.check(delta !== undefined, "no delta LV in the image after the first boots");
    const header = await readBytes(disk, delta!.offset, LUKS2_HEADER_BYTES);
    await writeBytes(disk, delta!.offset, swappedHeader(header));
    const swapped = await ctx.boot(disk, { label: "swapped-header", quick: true });
    ctx.expectStopped(
      swapped,
      /cryptpilot-delta: LUKS2 keyslot 0 .*cipher_null.*header was replaced/,
      "the header policy refusing the replaced delta header, naming keyslot 0",
    );
    ctx.check(
      !/unlocking the delta volume[^\n]*done|initialising:/.test(swapped.serial),
      "the delta with the replaced header was opened or reformatted",
      swapped,
    );
    await writeBytes(disk, delta!.offset, header);

    const third = await ctx.boot(disk, { label: "right-key-again", quick: true });
    expectFdeRoot(ctx, third, fde);
    ctx.check(
      third.markers.get("previous-boots") === "1,2",
      `data written before the wrong-key boot is gone (previous-boots=${third.markers.get("previous-boots")})`,
      third,
    );
  },
});

/** Checks shared by the FDE scenarios, on the markers of one boot. */
import { growImage } from "./disk.ts";
import type { FdeOptions } from "./fde.ts";
import type { BootOptions, BootResult, ScenarioContext } from "./scenario.ts";

/** The guest booted through the agent: root from /dev/mapper/rootfs, writable, lower untouched. */
export function expectFdeRoot(ctx: ScenarioContext, boot: BootResult, fde: FdeOptions): void {
  ctx.expectReported(boot);
  const m = boot.markers;
  if (fde.deltaBackend === "dm-snapshot") {
    ctx.check(
      m.get("root-source") === "/dev/mapper/rootfs",
      `root is ${m.get("root-source")}, not /dev/mapper/rootfs`,
      boot,
    );
    ctx.check(m.get("root-fstype") === "ext4", `root filesystem is ${m.get("root-fstype")}, not ext4`, boot);
  } else {
    ctx.check(
      m.get("root-fstype") === "overlay",
      `root filesystem is ${m.get("root-fstype")}, not overlay`,
      boot,
    );
  }
  ctx.check(m.get("root-writable") === "yes", "/ is not writable", boot);
  ctx.check(m.get("lower-device") !== "none", "no dm-verity device found in the booted system", boot);
  ctx.check(
    m.get("lower-boots") === "",
    `the verity-protected lower layer holds boot markers: ${m.get("lower-boots")}`,
    boot,
  );
  const blocks = m.blockSizes();
  if (fde.encryptRootfs)
    ctx.check(blocks.has("rootfs_decrypted"), "rootfs is encrypted but rootfs_decrypted is not open", boot);
  else
    ctx.check(!blocks.has("rootfs_decrypted"), "rootfs is not encrypted but rootfs_decrypted exists", boot);
  if (fde.deltaLocation === "ram") {
    ctx.check(!blocks.has("cryptpilot-delta"), "delta_location = ram but a delta LV exists", boot);
  } else {
    ctx.check(blocks.has("delta"), "the delta volume is not open as /dev/mapper/delta", boot);
  }
}

/** Size of the delta LV in a boot (bytes), from the lsblk markers. */
export function deltaSize(boot: BootResult): number {
  return boot.markers.blockSizes().get("cryptpilot-delta") ?? 0;
}

/** Boot 2 after boot 1: a file written in boot 1 is there only with disk-persist. */
export function expectPersistence(
  ctx: ScenarioContext,
  first: BootResult,
  second: BootResult,
  fde: FdeOptions,
): void {
  ctx.check(
    first.markers.get("previous-boots") === "",
    `a fresh image already had boot markers: ${first.markers.get("previous-boots")}`,
    first,
  );
  const kept = second.markers.get("previous-boots");
  if (fde.deltaLocation === "disk-persist") {
    ctx.check(
      kept === first.markers.get("this-boot"),
      `disk-persist lost boot 1's file (previous-boots=${kept})`,
      second,
    );
  } else {
    ctx.check(
      kept === "",
      `delta_location = ${fde.deltaLocation} kept boot 1's file (previous-boots=${kept})`,
      second,
    );
  }
}

/** How much bootAfterGrow enlarges the disk. */
const GROW_MIB = 512;

/**
 * Enlarge the disk, boot again and check the second boot against the first: the FDE root,
 * persistence as the layout says, a delta LV grown by at least half the added space and, with
 * disk-persist (with or without integrity), an opened delta and a root (dm-snapshot) or upper
 * filesystem (overlayfs) that grew with it in this same boot.
 */
export async function bootAfterGrow(
  ctx: ScenarioContext,
  disk: string,
  first: BootResult,
  fde: FdeOptions,
  opts: BootOptions,
): Promise<BootResult> {
  await growImage(disk, GROW_MIB);
  const second = await ctx.boot(disk, opts);
  expectFdeRoot(ctx, second, fde);
  expectPersistence(ctx, first, second, fde);
  ctx.check(
    deltaSize(second) > deltaSize(first) + (GROW_MIB / 2) * 2 ** 20,
    `the delta did not grow with the disk (${deltaSize(first)} -> ${deltaSize(second)} bytes)`,
    second,
  );
  if (fde.deltaLocation === "disk-persist") {
    const opened = (b: BootResult) => b.markers.blockSizes().get("delta") ?? 0;
    ctx.check(
      opened(second) > opened(first) + (GROW_MIB / 2) * 2 ** 20,
      `the opened delta did not grow with its LV (${opened(first)} -> ${opened(second)} bytes)`,
      second,
    );
    const rootGrew = Number(second.markers.get("root-size")) > Number(first.markers.get("root-size"));
    ctx.check(
      rootGrew,
      `the ${fde.deltaBackend === "overlayfs" ? "overlay's upper" : "root"} filesystem did not grow with the delta`,
      second,
    );
  }
  return second;
}

/**
 * The cryptpilot PV, VG and LVs written into a region of the output disk without device-mapper:
 * LVM metadata through a loop device and a private lvm.conf, LV contents copied straight to
 * `partition offset + pe_start + first extent * extent size`.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, runText } from "../command.ts";
import * as lvm from "../disk/lvm.ts";
import { VG } from "../disk/names.ts";
import { FdeError } from "../errors.ts";
import type { Cleanup } from "./cleanup.ts";
import type { Region } from "./layout.ts";

export interface LvImage {
  name: string;
  /** File whose bytes become the start of the LV. */
  file: string;
  /** LV size (at least the file size). */
  size: number;
}

export async function attachLoop(cleanup: Cleanup, file: string, region?: Region): Promise<string> {
  const args = ["--find", "--show"];
  if (region) args.push("--offset", String(region.offset), "--sizelimit", String(region.size));
  const dev = await runText("losetup", [...args, file]);
  cleanup.push(`losetup ${dev}`, () => run("losetup", ["-d", dev]));
  return dev;
}

/** Copy FILE into TARGET at byte offset OFFSET, skipping zero blocks only when TARGET is a fresh sparse file. */
export async function copyAt(
  file: string,
  target: string,
  offset: number,
  length: number,
  sparse: boolean,
): Promise<void> {
  await run("dd", [
    `if=${file}`,
    `of=${target}`,
    "bs=4M",
    `seek=${offset}`,
    `count=${length}`,
    "iflag=count_bytes",
    "oflag=seek_bytes",
    `conv=notrunc${sparse ? ",sparse" : ""}`,
    "status=none",
  ]);
}

/** Create PV/VG/LVs in REGION of DISK (a regular file) and copy each LV's image into place. */
export async function writePv(
  cleanup: Cleanup,
  workDir: string,
  disk: string,
  region: Region,
  lvs: LvImage[],
): Promise<{
  pv: lvm.PvInfo;
  ranges: Record<string, { lvOffset: number; pvOffset: number; length: number }[]>;
  /** The extents no LV uses (the delta's space from the first boot on), as a region of DISK. */
  free: Region;
}> {
  const loop = await attachLoop(cleanup, disk, region);
  const ctx = { systemDir: join(workDir, "lvm") };
  await mkdir(ctx.systemDir, { recursive: true });
  await writeFile(join(ctx.systemDir, "lvm.conf"), lvm.privateLvmConf(loop));
  await lvm.pvCreate(ctx, loop);
  await lvm.vgCreate(ctx, VG, loop);
  for (const lv of lvs) await lvm.lvCreateOffline(ctx, VG, lv.name, lv.size);
  const pv = await lvm.pvInfo(ctx, loop);
  const segs = await lvm.lvSegments(ctx, VG);
  await cleanup.runOne(`losetup ${loop}`);
  const ranges: Record<string, { lvOffset: number; pvOffset: number; length: number }[]> = {};
  for (const lv of lvs) {
    ranges[lv.name] = lvm.lvByteRanges(segs, lv.name, pv);
    const size = Bun.file(lv.file).size;
    for (const r of ranges[lv.name]!) {
      if (r.lvOffset >= size) break;
      // dd reads FILE from the start: one segment per LV is what lvcreate gives on a fresh PV.
      if (r.lvOffset !== 0)
        throw new FdeError(`LV ${lv.name} was allocated in several segments; expected one`);
      await copyAt(lv.file, disk, region.offset + r.pvOffset, Math.min(size, r.length), true);
    }
  }
  const usedEnd = Math.max(
    pv.peStartBytes,
    ...Object.values(ranges)
      .flat()
      .map((r) => r.pvOffset + r.length),
  );
  const extentsEnd = pv.peStartBytes + pv.peCount * pv.extentBytes;
  return { pv, ranges, free: { offset: region.offset + usedEnd, size: Math.max(0, extentsEnd - usedEnd) } };
}

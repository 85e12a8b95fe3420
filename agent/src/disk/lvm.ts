/**
 * LVM through its CLI. In the guest every call uses cryptpilot's own lvm.conf
 * (LVM_SYSTEM_DIR=/usr/lib/cryptpilot/lvm); convert passes a private directory whose filter
 * admits only its own loop device, so the host's volume groups are never touched.
 */
import { run, runText } from "../command.ts";
import { FdeError } from "../errors.ts";
import { checkActiveLayout } from "./lvm-layout.ts";

export const GUEST_LVM_SYSTEM_DIR = "/usr/lib/cryptpilot/lvm";

export interface LvmContext {
  systemDir: string;
}

function env(ctx: LvmContext): Record<string, string> {
  return { LVM_SYSTEM_DIR: ctx.systemDir, LVM_SUPPRESS_FD_WARNINGS: "1" };
}

async function lvm(ctx: LvmContext, args: string[], okCodes = [0]): Promise<string> {
  const { stdout } = await run("lvm", args, { env: env(ctx), okCodes });
  return new TextDecoder().decode(stdout);
}

/**
 * Activate VG, then check the layout the kernel now has (lvm-layout.ts): LVs that overlap, cover
 * the PV's LVM metadata or run past the PV's end are refused before anything uses them.
 */
export async function activateVg(ctx: LvmContext, vg: string): Promise<void> {
  await lvm(ctx, ["vgchange", "-a", "y", vg]);
  await checkActiveLayout(vg);
}

export async function deactivateVg(ctx: LvmContext, vg: string): Promise<void> {
  await lvm(ctx, ["vgchange", "-a", "n", vg]);
}

/** True when LVM finds the VG on a disk that is there now (vgs exits 5 when it is not). */
export async function vgVisible(ctx: LvmContext, vg: string): Promise<boolean> {
  const { code } = await run("lvm", ["vgs", "--noheadings", "-o", "vg_name", vg], {
    env: env(ctx),
    okCodes: [0, 5],
  });
  return code === 0;
}

/**
 * Wait until the VG's disk has been probed. The boot unit does not wait for udev to settle
 * (under TCG that is 15 s of unrelated device probing); it polls for the one disk it needs.
 * Returns how many milliseconds it waited.
 */
export async function waitForVg(
  ctx: LvmContext,
  vg: string,
  opts: { timeoutMs: number; intervalMs?: number; onWait?: () => void },
): Promise<number> {
  const start = performance.now();
  let announced = false;
  while (!(await vgVisible(ctx, vg))) {
    const waited = performance.now() - start;
    if (waited >= opts.timeoutMs) {
      throw new FdeError(
        `no disk with the LVM volume group "${vg}" appeared within ${Math.round(waited / 1000)} s`,
        {
          hint: `check that the converted disk is attached to this VM and its driver is in the initrd; \`lvm pvs\` in the emergency shell lists the physical volumes the initrd can see`,
        },
      );
    }
    if (!announced) {
      opts.onWait?.();
      announced = true;
    }
    await Bun.sleep(opts.intervalMs ?? 200);
  }
  return performance.now() - start;
}

export async function lvExists(ctx: LvmContext, vg: string, lv: string): Promise<boolean> {
  const out = await lvm(ctx, ["lvs", "--noheadings", "-o", "lv_name", vg]);
  return out.split("\n").some((l) => l.trim() === lv);
}

/** Create an LV over all free extents, without zeroing (no udev in the initrd to wait for). */
export async function createLvAllFree(ctx: LvmContext, vg: string, lv: string): Promise<void> {
  await lvm(ctx, ["lvcreate", "-y", "-n", lv, "--zero", "n", "-l", "100%FREE", vg]);
}

/** Grow an LV over all free extents; returns false when there was nothing to add (exit 5). */
export async function extendLvAllFree(ctx: LvmContext, vg: string, lv: string): Promise<boolean> {
  const { code } = await run("lvm", ["lvextend", "-l", "+100%FREE", `${vg}/${lv}`], {
    env: env(ctx),
    okCodes: [0, 5],
  });
  return code === 0;
}

export async function pvResize(ctx: LvmContext, pv: string): Promise<void> {
  await lvm(ctx, ["pvresize", pv]);
}

/** The PV devices of a VG. */
export async function pvsOfVg(ctx: LvmContext, vg: string): Promise<string[]> {
  const out = await lvm(ctx, ["pvs", "--noheadings", "-o", "pv_name,vg_name"]);
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === vg && f[0])
    .map((f) => f[0]!);
}

// --- offline creation (convert): metadata only, nothing activated -------------------------

export async function pvCreate(ctx: LvmContext, device: string): Promise<void> {
  await lvm(ctx, ["pvcreate", "-y", "-ff", device]);
}

export async function vgCreate(ctx: LvmContext, vg: string, device: string): Promise<void> {
  // No autoactivation: a host that sees this disk must not grab the VG.
  await lvm(ctx, ["vgcreate", "--force", "--setautoactivation", "n", vg, device]);
}

/** Write the LV's metadata without touching device-mapper (works on hosts without dm). */
export async function lvCreateOffline(
  ctx: LvmContext,
  vg: string,
  lv: string,
  sizeBytes: number,
): Promise<void> {
  await lvm(ctx, [
    "lvcreate",
    "--driverloaded",
    "n",
    "-an",
    "-Zn",
    "-y",
    "-n",
    lv,
    "-L",
    `${sizeBytes}b`,
    vg,
  ]);
}

export interface PvInfo {
  peStartBytes: number;
  extentBytes: number;
  /** Physical extents on the PV. */
  peCount: number;
}

export async function pvInfo(ctx: LvmContext, device: string): Promise<PvInfo> {
  const out = await runText(
    "lvm",
    [
      "pvs",
      "--noheadings",
      "--units",
      "b",
      "--nosuffix",
      "-o",
      "pe_start,vg_extent_size,pv_pe_count",
      device,
    ],
    { env: env(ctx) },
  );
  const [peStart, extent, peCount] = out.trim().split(/\s+/).map(Number);
  return { peStartBytes: peStart!, extentBytes: extent!, peCount: peCount! };
}

export interface LvSegment {
  lv: string;
  /** First logical extent of this segment within the LV. */
  lvStartExtent: number;
  /** First physical extent on the PV. */
  pvStartExtent: number;
  extents: number;
}

/** Parse `lvs --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges` (one PV). */
export function parseSegments(text: string): LvSegment[] {
  const segs: LvSegment[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const range = /:(\d+)-(\d+)$/.exec(f[3]!);
    if (!range) throw new FdeError(`unexpected LVM segment range '${f[3]}' in the lvs output`);
    segs.push({
      lv: f[0]!,
      lvStartExtent: Number(f[1]),
      pvStartExtent: Number(range[1]),
      extents: Number(f[2]),
    });
  }
  return segs;
}

export async function lvSegments(ctx: LvmContext, vg: string): Promise<LvSegment[]> {
  const out = await lvm(ctx, [
    "lvs",
    "--segments",
    "--noheadings",
    "-o",
    "lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges",
    vg,
  ]);
  return parseSegments(out);
}

/** Byte ranges on the PV that hold LV bytes [0, ...), in LV order. */
export function lvByteRanges(
  segs: LvSegment[],
  lv: string,
  pv: Pick<PvInfo, "peStartBytes" | "extentBytes">,
): { lvOffset: number; pvOffset: number; length: number }[] {
  return segs
    .filter((s) => s.lv === lv)
    .sort((a, b) => a.lvStartExtent - b.lvStartExtent)
    .map((s) => ({
      lvOffset: s.lvStartExtent * pv.extentBytes,
      pvOffset: pv.peStartBytes + s.pvStartExtent * pv.extentBytes,
      length: s.extents * pv.extentBytes,
    }));
}

/** The lvm.conf convert uses: only DEVICE is visible, nothing is activated or backed up. */
export function privateLvmConf(device: string): string {
  return `devices {
  filter = [ "a|^${device}$|", "r|.*|" ]
  use_devicesfile = 0
  obtain_device_list_from_udev = 0
}
global {
  use_lvmpolld = 0
  event_activation = 0
}
activation {
  udev_sync = 0
  udev_rules = 0
  monitoring = 0
}
backup {
  backup = 0
  archive = 0
}
`;
}

/**
 * LVM layout sanity (issue #14): the LVM metadata is on the host's disk, so it can map two LVs onto
 * the same sectors (a write to the delta lands in the rootfs or its hash tree), map an LV over the
 * PV's own label and metadata, or past the end of the PV. After activation the kernel's dm tables
 * say where each LV really is; this checks THOSE (the host cannot change them), not the metadata.
 */
import { readFile, stat } from "node:fs/promises";
import { run } from "../command.ts";
import { FdeError } from "../errors.ts";

/** One linear piece of an active LV: where its sectors sit on a physical volume. */
export interface LvExtent {
  lv: string;
  /** The PV's block device as major:minor (what dm tables name). */
  device: string;
  /** First sector on the PV and length, in 512-byte sectors. */
  start: number;
  sectors: number;
}

/** What is known about each PV, keyed by major:minor. */
export interface PvBounds {
  /** Size of the PV's block device in sectors. */
  sectors: number;
  /** Sectors before the first extent (LVM label and metadata): no LV may map them. */
  peStart?: number;
}

/**
 * The LV name of dm mapping NAME when it belongs to VG, else undefined. LVM names a mapping
 * VG-LV with each "-" inside VG and LV doubled; the first single "-" ends the VG part. (A layer
 * such as "rootfs-real" keeps its single "-": it is checked like any other LV.)
 */
export function lvOfMapping(vg: string, name: string): string | undefined {
  for (let i = 0; i < name.length; i++) {
    if (name[i] !== "-") continue;
    if (name[i + 1] === "-") {
      i++;
      continue;
    }
    if (name.slice(0, i).replaceAll("--", "-") !== vg) return undefined;
    return name.slice(i + 1).replaceAll("--", "-");
  }
  return undefined;
}

/**
 * Parse `dmsetup table` (all mappings) into the extents of VG's LVs. cryptpilot's LVs are linear;
 * any other target on one of them (striped, mirror, thin, snapshot, ...) is refused naming the LV.
 */
export function parseVgTables(vg: string, text: string, lvNames?: string[]): LvExtent[] {
  const extents: LvExtent[] = [];
  for (const line of text.split("\n")) {
    const m = /^(\S+):\s+(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(line.trim());
    if (!m) continue;
    const lv = lvOfMapping(vg, m[1]!);
    if (lv === undefined) continue;
    // Only the VG's LVs (and their layers, "LV-real" ...): not a volume's "cryptpilot-init-NAME".
    if (lvNames && !lvNames.some((n) => lv === n || lv.startsWith(`${n}-`))) continue;
    const target = m[4]!;
    const args = m[5]!.trim().split(/\s+/);
    if (target !== "linear" || args.length !== 2 || !/^\d+:\d+$/.test(args[0]!) || !/^\d+$/.test(args[1]!)) {
      throw new FdeError(
        `LVM volume group ${vg}: LV ${lv} is mapped as "${target}"; cryptpilot's LVs are linear`,
        { hint: "the LVM metadata on the disk was changed outside the guest" },
      );
    }
    extents.push({ lv, device: args[0]!, start: Number(args[1]), sectors: Number(m[3]) });
  }
  return extents;
}

/**
 * Every extent inside its PV (after the LVM metadata, before the end) and no two extents sharing a
 * sector. Throws an FdeError naming the LVs and the PV. Pure: tests feed parsed tables.
 */
export function checkLvLayout(vg: string, extents: LvExtent[], pvs: Map<string, PvBounds>): void {
  const fail = (what: string) =>
    new FdeError(`LVM volume group ${vg}: ${what}`, {
      hint: "the LVM metadata on the disk was changed outside the guest; nothing was written. Restore the disk image or its LVM metadata (vgcfgrestore) from a backup",
    });
  for (const e of extents) {
    const pv = pvs.get(e.device);
    if (!pv)
      throw fail(
        `LV ${e.lv} is mapped onto device ${e.device}, which is not one of the VG's physical volumes`,
      );
    if (e.start + e.sectors > pv.sectors)
      throw fail(
        `LV ${e.lv} ends at sector ${e.start + e.sectors}, beyond its physical volume ${e.device} (${pv.sectors} sectors)`,
      );
    if (pv.peStart !== undefined && e.start < pv.peStart)
      throw fail(
        `LV ${e.lv} starts at sector ${e.start}, inside the LVM metadata of physical volume ${e.device} (extents start at ${pv.peStart})`,
      );
  }
  const sorted = [...extents].sort((a, b) =>
    a.device === b.device ? a.start - b.start : a.device < b.device ? -1 : 1,
  );
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (a.device === b.device && b.start < a.start + a.sectors) {
      throw fail(
        a.lv === b.lv
          ? `LV ${a.lv} maps sectors ${b.start}-${Math.min(a.start + a.sectors, b.start + b.sectors) - 1} of ${a.device} twice`
          : `LVs ${a.lv} and ${b.lv} overlap on physical volume ${a.device} (sectors ${b.start}-${Math.min(a.start + a.sectors, b.start + b.sectors) - 1})`,
      );
    }
  }
}

/** major:minor of a block device node. */
async function majorMinor(device: string): Promise<string> {
  const { rdev } = await stat(device);
  // Linux dev_t encoding (glibc gnu_dev_major/minor).
  const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/**
 * Check the active layout of VG: the dm tables of LV_NAMES against the VG's PVS (device and
 * pe_start in sectors, from `pvs`; sizes from sysfs).
 */
export async function checkActiveLayout(
  vg: string,
  lvNames: string[],
  pvs: { device: string; peStartSectors: number }[],
): Promise<void> {
  const { stdout } = await run("dmsetup", ["table"]);
  const extents = parseVgTables(vg, new TextDecoder().decode(stdout), lvNames);
  const bounds = new Map<string, PvBounds>();
  for (const pv of pvs) {
    try {
      const id = await majorMinor(pv.device);
      const sectors = Number((await readFile(`/sys/dev/block/${id}/size`, "utf8")).trim());
      bounds.set(id, { sectors, peStart: pv.peStartSectors });
    } catch (cause) {
      throw new FdeError(`LVM volume group ${vg}: cannot find the size of physical volume ${pv.device}`, {
        cause,
      });
    }
  }
  checkLvLayout(vg, extents, bounds);
}

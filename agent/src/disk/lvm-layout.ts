/**
 * LVM layout sanity (issue #14): the LVM metadata is on the host's disk, so it can map two LVs onto
 * the same sectors (a write to the delta lands in the rootfs or its hash tree), map an LV over the
 * PV's own label and metadata, or past the end of the PV. After activation the kernel's dm tables
 * say where each LV really is; this checks THOSE (the host cannot change them), not the metadata.
 */
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
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

/** Where a PV's data area (its first extent) starts, in 512-byte sectors; undefined: no LVM label. */
export function peStartFromLabel(head: Uint8Array): number | undefined {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const ascii = (at: number, len: number) => new TextDecoder().decode(head.subarray(at, at + len));
  // The label is in one of the first four sectors: "LABELONE", then at byte 20 the offset of the
  // pv_header (uuid[32], device size u64, then the data areas as {offset u64, size u64}).
  for (let s = 0; s < 4 && (s + 1) * 512 <= head.length; s++) {
    const at = s * 512;
    if (ascii(at, 8) !== "LABELONE" || ascii(at + 24, 8) !== "LVM2 001") continue;
    const pvHeader = view.getUint32(at + 20, true);
    if (pvHeader < 32 || pvHeader > 512 - 56) return undefined;
    const bytes = view.getBigUint64(at + pvHeader + 40, true);
    return bytes % 512n === 0n && bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes / 512n) : undefined;
  }
  return undefined;
}

/** dm names of active LVM volumes (dm uuid "LVM-..."), read from sysfs: no process to spawn. */
async function lvmMappingNames(sysBlock = "/sys/block"): Promise<string[]> {
  const names: string[] = [];
  for (const dev of await readdir(sysBlock).catch(() => [] as string[])) {
    if (!dev.startsWith("dm-")) continue;
    try {
      const uuid = (await readFile(join(sysBlock, dev, "dm/uuid"), "utf8")).trim();
      if (uuid.startsWith("LVM-"))
        names.push((await readFile(join(sysBlock, dev, "dm/name"), "utf8")).trim());
    } catch {
      // Gone meanwhile: not ours to check.
    }
  }
  return names;
}

/**
 * Check the active layout of VG: the dm tables of its LVs (one `dmsetup table`) against each PV
 * they map onto: its size (sysfs) and where its extents start (the PV's LVM label, read in-process:
 * an `lvm pvs` run costs ~0.5 s in an emulated guest, a quarter of the activation step).
 */
export async function checkActiveLayout(vg: string): Promise<void> {
  const lvNames = (await lvmMappingNames())
    .map((name) => lvOfMapping(vg, name))
    .filter((lv): lv is string => lv !== undefined);
  const { stdout } = await run("dmsetup", ["table"]);
  const extents = parseVgTables(vg, new TextDecoder().decode(stdout), lvNames);
  const bounds = new Map<string, PvBounds>();
  for (const id of new Set(extents.map((e) => e.device))) {
    try {
      const sectors = Number((await readFile(`/sys/dev/block/${id}/size`, "utf8")).trim());
      const fh = await open(`/dev/block/${id}`, "r");
      const head = new Uint8Array(2048);
      try {
        await fh.read(head, 0, head.length, 0);
      } finally {
        await fh.close();
      }
      const peStart = peStartFromLabel(head);
      if (peStart === undefined) {
        throw new FdeError(`LVM volume group ${vg}: device ${id}, which its LVs map onto, has no LVM label`, {
          hint: "the LVM metadata on the disk was changed outside the guest",
        });
      }
      bounds.set(id, { sectors, peStart });
    } catch (cause) {
      if (cause instanceof FdeError) throw cause;
      throw new FdeError(`LVM volume group ${vg}: cannot read physical volume ${id}`, { cause });
    }
  }
  checkLvLayout(vg, extents, bounds);
}

/**
 * Decisions about the delta (writable) volume, kept pure so they are unit-tested: whether to
 * (re)initialise it, what to do with an existing COW, and the snapshot sizes.
 */
import { type IntegritySize, SUBSYSTEM_INITIALIZING, SUBSYSTEM_READY } from "../disk/luks.ts";
import { FdeError } from "../errors.ts";

export type DeltaLocation = "disk" | "disk-persist" | "ram";

export interface ReinitDecision {
  recreate: boolean;
  reason: string;
}

/**
 * Re-initialise when the key is temporary, when the volume is not a finished cryptpilot delta
 * (no LUKS2 header, a foreign one, or "cryptpilot-initializing" left by an interrupted first
 * boot), or in `disk` mode (wiped every boot). Otherwise the volume is opened, and a wrong key
 * is an error: never a reason to reformat.
 */
export function decideReinit(opts: {
  temporaryKey: boolean;
  subsystem: string | undefined;
  location: DeltaLocation;
}): ReinitDecision {
  if (opts.temporaryKey) return { recreate: true, reason: "the key provider makes a new key every boot" };
  if (opts.subsystem === undefined) return { recreate: true, reason: "no LUKS2 header yet (first boot)" };
  if (opts.subsystem === SUBSYSTEM_INITIALIZING) {
    return { recreate: true, reason: "a previous initialisation was interrupted" };
  }
  if (opts.subsystem !== SUBSYSTEM_READY) {
    return { recreate: true, reason: `LUKS2 header is not cryptpilot's (subsystem '${opts.subsystem}')` };
  }
  if (opts.location === "disk")
    return { recreate: true, reason: "delta_location = disk is wiped on every boot" };
  return { recreate: false, reason: "initialised delta volume, kept (disk-persist)" };
}

export type CowAction = "zero" | "keep";

/**
 * What to do with the COW device before building the snapshot. A persistent COW that blkid
 * recognises is kept; an unrecognised signature is refused rather than overwritten.
 */
export function cowAction(opts: {
  persistent: boolean;
  recreated: boolean;
  blkidType: string | undefined;
}): CowAction {
  if (!opts.persistent || opts.recreated) return "zero";
  if (opts.blkidType === undefined) return "zero";
  if (opts.blkidType === "DM_snapshot_cow") return "keep";
  throw new FdeError(
    `the delta volume holds a '${opts.blkidType}' signature, not a dm-snapshot COW store; refusing to overwrite it`,
  );
}

/**
 * How far an opened integrity delta can grow: dm-integrity records its size in its superblock,
 * and the kernel writes the larger size a grown device allows only while activating it, after
 * cryptsetup has sized the table from the old value. Undefined when there is nothing to gain.
 */
export function integrityGrowth(size: IntegritySize): { fromSectors: number; toSectors: number } | undefined {
  if (size.providedSectors <= size.mappedSectors) return undefined;
  return { fromSectors: size.mappedSectors, toSectors: size.providedSectors };
}

/**
 * What an integrity delta with the overlayfs backend must wipe before its filesystem grows: the
 * part of the device beyond the filesystem, which dm-integrity has never written (resize2fs and
 * e2fsck may read there first). Blocks past the filesystem's end hold no data, so the range is
 * safe to overwrite, and an interrupted wipe is redone from the same start on the next boot,
 * because the filesystem only grows after the wipe has finished.
 */
export function overlayWipeRange(
  fsBytes: number,
  deviceBytes: number,
): { start: number; end: number } | undefined {
  return deviceBytes > fsBytes ? { start: fsBytes, end: deviceBytes } : undefined;
}

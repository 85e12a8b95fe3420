/**
 * Every device, VG, LV and mapper name the FDE layout uses, defined once at the bottom layer so
 * convert (which writes the layout), boot (which opens it), the providers (tpm2's default device)
 * and the data-volume schema (which must not take these names) agree. The names are upstream
 * cryptpilot's (udev rule, docs, operators' muscle memory): changing one breaks converted disks.
 */

/** The LVM volume group convert creates and the boot stage activates. */
export const VG = "cryptpilot";

/** LV names inside VG. */
export const ROOTFS_LV_NAME = "rootfs";
export const ROOTFS_HASH_LV_NAME = "rootfs_hash";
export const DELTA_LV_NAME = "delta";

/** A device-mapper node. */
export const mapper = (name: string) => `/dev/mapper/${name}`;

/**
 * The mapper node of LV `lv` in VG (`/dev/mapper/cryptpilot-<lv>`): the LUKS2 device of a boot
 * volume, and the tpm2 provider's default device. LVM doubles '-' inside a name; our LV names
 * have none, and a volume name is passed through unchanged as before.
 */
export const lvMapperPath = (lv: string) => mapper(`${VG}-${lv}`);

export const LV_ROOTFS = lvMapperPath(ROOTFS_LV_NAME);
export const LV_ROOTFS_HASH = lvMapperPath(ROOTFS_HASH_LV_NAME);
export const LV_DELTA = lvMapperPath(DELTA_LV_NAME);

/** Mapper names the boot stage creates on top of the LVs. */
export const ROOTFS_DECRYPTED = "rootfs_decrypted";
export const ROOTFS_VERITY = "rootfs_verity";
export const ROOTFS_EXTENDED = "rootfs_extended";
export const ROOTFS = "rootfs";
export const DELTA = "delta";

/** The root device the stages hand to systemd (sysroot.mount). */
export const ROOT_DEVICE = mapper(ROOTFS);

/**
 * Mapper names a data volume must not take: the boot path's own, and anything starting with the
 * VG name (its LVs appear as `cryptpilot-<lv>`).
 */
export const RESERVED_MAPPER_NAMES: readonly string[] = [
  ROOTFS,
  ROOTFS_DECRYPTED,
  ROOTFS_VERITY,
  ROOTFS_EXTENDED,
  DELTA,
];
export const RESERVED_MAPPER_PREFIX = VG;

/** True if a data volume may not use `name` as its mapper name. */
export function isReservedMapperName(name: string): boolean {
  return RESERVED_MAPPER_NAMES.includes(name) || name.startsWith(RESERVED_MAPPER_PREFIX);
}

/** Device names shared with upstream cryptpilot (udev rule, docs, operators' muscle memory). */
export const VG = "cryptpilot";
export const LV_ROOTFS = "/dev/mapper/cryptpilot-rootfs";
export const LV_ROOTFS_HASH = "/dev/mapper/cryptpilot-rootfs_hash";
export const LV_DELTA = "/dev/mapper/cryptpilot-delta";
export const DELTA_LV_NAME = "delta";

export const ROOTFS_DECRYPTED = "rootfs_decrypted";
export const ROOTFS_VERITY = "rootfs_verity";
export const ROOTFS_EXTENDED = "rootfs_extended";
export const ROOTFS = "rootfs";
export const DELTA = "delta";

export const mapper = (name: string) => `/dev/mapper/${name}`;
export const ROOT_DEVICE = mapper(ROOTFS);

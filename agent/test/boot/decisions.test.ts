import { describe, expect, test } from "bun:test";
import { afterSysrootSteps, mountSource } from "../../src/boot/after-sysroot.ts";
import { beforeSysrootSteps } from "../../src/boot/before-sysroot.ts";
import { cowAction, decideReinit } from "../../src/boot/delta.ts";
import type { FdeConfig } from "../../src/config/index.ts";
import { extendedTable, snapshotTable } from "../../src/disk/dm.ts";

describe("delta re-initialisation decision", () => {
  test("first boot, interrupted init, foreign header: (re)format", () => {
    for (const location of ["disk", "disk-persist"] as const) {
      expect(decideReinit({ temporaryKey: false, subsystem: undefined, location }).recreate).toBe(true);
      expect(decideReinit({ temporaryKey: false, subsystem: "cryptpilot-initializing", location })).toEqual({
        recreate: true,
        reason: "a previous initialisation was interrupted",
      });
      expect(decideReinit({ temporaryKey: false, subsystem: "", location }).recreate).toBe(true);
      expect(decideReinit({ temporaryKey: false, subsystem: "other", location }).recreate).toBe(true);
    }
  });
  test("an initialised persistent delta is opened, never reformatted", () => {
    expect(
      decideReinit({ temporaryKey: false, subsystem: "cryptpilot", location: "disk-persist" }).recreate,
    ).toBe(false);
  });
  test("disk mode and temporary keys always start fresh", () => {
    expect(decideReinit({ temporaryKey: false, subsystem: "cryptpilot", location: "disk" }).recreate).toBe(
      true,
    );
    expect(
      decideReinit({ temporaryKey: true, subsystem: "cryptpilot", location: "disk-persist" }).recreate,
    ).toBe(true);
  });
});

describe("COW handling", () => {
  test("persistent COW kept only when blkid says DM_snapshot_cow", () => {
    expect(cowAction({ persistent: true, recreated: false, blkidType: "DM_snapshot_cow" })).toBe("keep");
    expect(cowAction({ persistent: true, recreated: false, blkidType: undefined })).toBe("zero");
    expect(() => cowAction({ persistent: true, recreated: false, blkidType: "ext4" })).toThrow(
      /refusing to overwrite/,
    );
  });
  test("non-persistent or freshly formatted COW is zeroed", () => {
    expect(cowAction({ persistent: false, recreated: false, blkidType: "DM_snapshot_cow" })).toBe("zero");
    expect(cowAction({ persistent: true, recreated: true, blkidType: "DM_snapshot_cow" })).toBe("zero");
  });
});

describe("device-mapper tables", () => {
  test("verity + zero, then a snapshot of the sum with chunk size 16", () => {
    expect(extendedTable("/dev/mapper/rootfs_verity", 2048, 8192)).toBe(
      "0 2048 linear /dev/mapper/rootfs_verity 0\n2048 8192 zero",
    );
    expect(snapshotTable("/dev/mapper/rootfs_extended", 10240, "/dev/mapper/delta", true)).toBe(
      "0 10240 snapshot /dev/mapper/rootfs_extended /dev/mapper/delta PO 16",
    );
    expect(snapshotTable("/dev/mapper/rootfs_extended", 10240, "/dev/zram1", false)).toBe(
      "0 10240 snapshot /dev/mapper/rootfs_extended /dev/zram1 N 16",
    );
  });
});

const cfg = (
  deltaLocation: FdeConfig["rootfs"]["deltaLocation"],
  deltaBackend: FdeConfig["rootfs"]["deltaBackend"],
  encrypted: boolean,
): FdeConfig => ({
  rootfs: {
    deltaLocation,
    deltaBackend,
    encrypt: encrypted ? { type: "exec", command: "cat", args: [] } : undefined,
  } as FdeConfig["rootfs"],
  delta: { integrity: false, encrypt: { type: "otp" } as FdeConfig["delta"]["encrypt"] },
});

describe("step order", () => {
  test("dm-snapshot on disk with an encrypted rootfs", () => {
    expect(beforeSysrootSteps(cfg("disk-persist", "dm-snapshot", true)).map((s) => s.title)).toEqual([
      "activating LVM volume group cryptpilot",
      "loading the dm-verity root hash (metadata.toml)",
      "checking the clock before the first key fetch",
      "unlocking the encrypted rootfs",
      "opening dm-verity",
      "growing the disk partition and the delta volume",
      "unlocking the delta volume",
      "building the writable root (dm-snapshot)",
    ]);
  });
  test("ram: no delta volume; overlayfs in ram needs nothing before sysroot", () => {
    expect(beforeSysrootSteps(cfg("ram", "dm-snapshot", false)).map((s) => s.title)).toEqual([
      "activating LVM volume group cryptpilot",
      "loading the dm-verity root hash (metadata.toml)",
      "opening dm-verity",
      "building the writable root (dm-snapshot)",
    ]);
    expect(beforeSysrootSteps(cfg("ram", "overlayfs", false)).map((s) => s.title)).toHaveLength(3);
  });
  test("overlayfs on disk formats or grows the delta filesystem", () => {
    expect(beforeSysrootSteps(cfg("disk", "overlayfs", false)).at(-1)!.title).toBe(
      "preparing the overlay filesystem on the delta volume",
    );
  });
  test("after-sysroot: only the check for dm-snapshot, overlay mounts for overlayfs", () => {
    expect(afterSysrootSteps(cfg("disk", "dm-snapshot", false))).toHaveLength(1);
    expect(afterSysrootSteps(cfg("ram", "overlayfs", false)).map((s) => s.title)).toEqual([
      "checking that /sysroot is /dev/mapper/rootfs",
      "mounting the overlay over /sysroot",
      "binding container storage directories",
    ]);
  });
});

describe("mount table", () => {
  const mounts = "/dev/vda1 / ext4 rw 0 0\n/dev/mapper/rootfs /sysroot ext4 ro 0 0\n";
  test("finds the source of /sysroot; the last mount on a point wins", () => {
    expect(mountSource(mounts, "/sysroot")).toBe("/dev/mapper/rootfs");
    expect(mountSource(`${mounts}/dev/vdb /sysroot ext4 rw 0 0\n`, "/sysroot")).toBe("/dev/vdb");
    expect(mountSource(mounts, "/nothing")).toBeUndefined();
  });
});

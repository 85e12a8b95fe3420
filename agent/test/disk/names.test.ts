import { describe, expect, test } from "bun:test";
import * as N from "../../src/disk/names.ts";

describe("disk/names", () => {
  test("the layout's device names are upstream cryptpilot's", () => {
    expect(N.VG).toBe("cryptpilot");
    expect(N.LV_ROOTFS).toBe("/dev/mapper/cryptpilot-rootfs");
    expect(N.LV_ROOTFS_HASH).toBe("/dev/mapper/cryptpilot-rootfs_hash");
    expect(N.LV_DELTA).toBe("/dev/mapper/cryptpilot-delta");
    expect(N.lvMapperPath("data0")).toBe("/dev/mapper/cryptpilot-data0");
    expect(N.ROOT_DEVICE).toBe("/dev/mapper/rootfs");
  });

  test("a data volume may not take a boot mapper name or the VG prefix", () => {
    for (const name of [
      "rootfs",
      "rootfs_decrypted",
      "rootfs_verity",
      "rootfs_extended",
      "delta",
      "cryptpilot-x",
    ]) {
      expect(N.isReservedMapperName(name)).toBe(true);
    }
    expect(N.isReservedMapperName("data0")).toBe(false);
  });
});

/**
 * LVM layout sanity (issue #14): the LVM metadata is host-written, so after activation the kernel's
 * dm tables are checked: cryptpilot's LVs are linear, inside their PV after its metadata area, and
 * never share a sector. Pure checks on `dmsetup table` text as the guest prints it (this host has
 * no device-mapper; the activation path itself runs in the VM scenarios).
 */
import { expect, test } from "bun:test";
import {
  checkLvLayout,
  lvOfMapping,
  type PvBounds,
  parseVgTables,
  peStartFromLabel,
} from "../../src/disk/lvm-layout.ts";
import { FdeError } from "../../src/errors.ts";

const LVS = ["rootfs", "rootfs_hash", "delta"];
/** A converted disk after activation: PV 252:3 of 4 GiB, extents from sector 2048. */
const PV = new Map<string, PvBounds>([["252:3", { sectors: 8388608, peStart: 2048 }]]);
const TABLE = `cryptpilot-delta: 0 4192256 linear 252:3 4196352
cryptpilot-rootfs: 0 4096000 linear 252:3 2048
cryptpilot-rootfs_hash: 0 98304 linear 252:3 4098048
rootfs_decrypted: 0 4063232 crypt aes-xts-plain64 :64:logon:cryptsetup:x 0 252:4 32768
cryptpilot-init-data: 0 100 crypt aes-xts-plain64 :64:logon:cryptsetup:y 0 252:16 32768
`;

const layoutError = (table: string, pvs = PV): string => {
  try {
    checkLvLayout("cryptpilot", parseVgTables("cryptpilot", table, LVS), pvs);
  } catch (err) {
    expect(err).toBeInstanceOf(FdeError);
    return (err as Error).message;
  }
  throw new Error("layout accepted");
};

test("the converted layout passes; other mappings (a volume's cryptpilot-init-*, crypt targets) are ignored", () => {
  const extents = parseVgTables("cryptpilot", TABLE, LVS);
  expect(extents.map((e) => e.lv).sort()).toEqual(["delta", "rootfs", "rootfs_hash"]);
  expect(extents.find((e) => e.lv === "rootfs")).toEqual({
    lv: "rootfs",
    device: "252:3",
    start: 2048,
    sectors: 4096000,
  });
  checkLvLayout("cryptpilot", extents, PV);
});

test("a delta mapped over the rootfs hash tree is refused naming both LVs", () => {
  const table = TABLE.replace("linear 252:3 4196352", "linear 252:3 4100000");
  expect(layoutError(table)).toMatch(
    /LVs rootfs_hash and delta overlap on physical volume 252:3 \(sectors 4100000-/,
  );
});

test("an LV past the end of its PV, or over the PV's LVM metadata, is refused", () => {
  expect(layoutError(TABLE.replace("0 4192256 linear", "0 4192300 linear"))).toMatch(
    /LV delta ends at sector 8388652, beyond its physical volume 252:3 \(8388608 sectors\)/,
  );
  expect(layoutError(TABLE.replace("linear 252:3 2048", "linear 252:3 0"))).toMatch(
    /LV rootfs starts at sector 0, inside the LVM metadata of physical volume 252:3/,
  );
  expect(layoutError(TABLE.replace("linear 252:3 4196352", "linear 252:9 0"))).toMatch(
    /LV delta is mapped onto device 252:9, which is not one of the VG's physical volumes/,
  );
});

test("a second segment of one LV over its own first segment, and a non-linear LV, are refused", () => {
  const twice = `${TABLE}cryptpilot-delta: 4192256 1000 linear 252:3 4196400\n`;
  expect(layoutError(twice)).toMatch(/LV delta maps sectors 4196400-4197399 of 252:3 twice/);
  const striped = TABLE.replace(
    "cryptpilot-rootfs: 0 4096000 linear 252:3 2048",
    "cryptpilot-rootfs: 0 4096000 striped 2 128 252:3 2048 252:4 2048",
  );
  expect(() => parseVgTables("cryptpilot", striped, LVS)).toThrow(
    /LV rootfs is mapped as "striped"; cryptpilot's LVs are linear/,
  );
});

test("dm names: dashes doubled inside VG and LV names, a single dash splits them", () => {
  expect(lvOfMapping("cryptpilot", "cryptpilot-rootfs_hash")).toBe("rootfs_hash");
  expect(lvOfMapping("my-vg", "my--vg-a--b")).toBe("a-b");
  expect(lvOfMapping("cryptpilot", "cryptpilot--x-rootfs")).toBeUndefined(); // VG "cryptpilot-x"
  expect(lvOfMapping("cryptpilot", "rootfs")).toBeUndefined();
  expect(lvOfMapping("cryptpilot", "cryptpilot-rootfs-real")).toBe("rootfs-real"); // a layer: checked too
});

/** The first 2 KiB of a PV as pvcreate writes it: label in sector 1, pv_header at byte 32 of it. */
function pvHead(peStartBytes: bigint, labelSector = 1): Uint8Array {
  const head = new Uint8Array(2048);
  const view = new DataView(head.buffer);
  const at = labelSector * 512;
  head.set(new TextEncoder().encode("LABELONE"), at);
  view.setBigUint64(at + 8, BigInt(labelSector), true);
  view.setUint32(at + 20, 32, true);
  head.set(new TextEncoder().encode("LVM2 001"), at + 24);
  head.set(new TextEncoder().encode("x".repeat(32)), at + 32); // PV uuid
  view.setBigUint64(at + 64, 4n << 30n, true); // device size
  view.setBigUint64(at + 72, peStartBytes, true); // first data area: offset (pe_start) ...
  return head;
}

test("pe_start comes from the PV's own label (no lvm run); no label, or an unaligned offset: none", () => {
  expect(peStartFromLabel(pvHead(1048576n))).toBe(2048);
  expect(peStartFromLabel(pvHead(1048576n, 3))).toBe(2048);
  expect(peStartFromLabel(pvHead(1000n))).toBeUndefined();
  expect(peStartFromLabel(new Uint8Array(2048))).toBeUndefined();
});

import { describe, expect, test } from "bun:test";
import { canGrow, hasSnapshotCowMagic, parseMemTotal } from "../../src/disk/blockdev.ts";
import { formatArgs, parseLuks2Subsystem, pbkdfFor } from "../../src/disk/luks.ts";
import { lvByteRanges, parseSegments } from "../../src/disk/lvm.ts";
import { parseVerityFormat } from "../../src/disk/verity.ts";

function luksHeader(subsystem: string): Uint8Array {
  const h = new Uint8Array(512);
  h.set([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 2]);
  h.set(new TextEncoder().encode(subsystem), 208);
  return h;
}

describe("LUKS2", () => {
  test("subsystem from the binary header", () => {
    expect(parseLuks2Subsystem(luksHeader("cryptpilot"))).toBe("cryptpilot");
    expect(parseLuks2Subsystem(luksHeader("cryptpilot-initializing"))).toBe("cryptpilot-initializing");
    expect(parseLuks2Subsystem(luksHeader(""))).toBe("");
    expect(parseLuks2Subsystem(new Uint8Array(4096))).toBeUndefined();
    const v1 = luksHeader("x");
    v1[7] = 1;
    expect(parseLuks2Subsystem(v1)).toBeUndefined();
  });
  test("format arguments: key on stdin, 4096-byte sectors, integrity key size", () => {
    const plain = formatArgs("/dev/x", { subsystem: "cryptpilot-initializing" }, pbkdfFor(64));
    expect(plain).toContain("--key-file=-");
    expect(plain.join(" ")).toContain("--cipher aes-xts-plain64 --sector-size 4096 --key-size 512");
    expect(plain.join(" ")).toContain("--subsystem cryptpilot-initializing");
    const integ = formatArgs("/dev/x", { integrity: true, integrityNoWipe: true }, pbkdfFor(64)).join(" ");
    // cryptsetup adds the 256-bit HMAC key to --key-size itself (768 here makes XTS reject the key).
    expect(integ).toContain("--key-size 512 --integrity hmac-sha256 --integrity-no-wipe");
  });
  test("PBKDF: minimal pbkdf2 for keys of 32 bytes or more, cryptsetup's argon2id for passphrases", () => {
    const fast = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    const args = (keyBytes: number, randomKey?: boolean) =>
      formatArgs("/dev/x", { subsystem: "cryptpilot", randomKey }, pbkdfFor(keyBytes, randomKey));
    for (const n of [32, 64, 4096]) {
      expect(args(n).join(" ")).toContain(`${fast.join(" ")} --key-file=- /dev/x`);
      expect(pbkdfFor(n).summary).toContain("pbkdf2, 1000 iterations");
    }
    for (const n of [1, 20, 31]) {
      expect(args(n)).not.toContain("--pbkdf");
      expect(args(n)).not.toContain("--pbkdf-force-iterations");
      expect(pbkdfFor(n).summary).toContain("argon2id");
    }
    // An explicitly random key (otp) is fast whatever its length.
    expect(args(16, true).join(" ")).toContain(fast.join(" "));
  });
});

describe("LVM and verity reports", () => {
  test("segments to byte ranges on the PV", () => {
    const segs = parseSegments("  rootfs      0 13 /dev/loop0:0-12\n  rootfs_hash 0 1 /dev/loop0:13-13\n");
    expect(segs).toEqual([
      { lv: "rootfs", lvStartExtent: 0, pvStartExtent: 0, extents: 13 },
      { lv: "rootfs_hash", lvStartExtent: 0, pvStartExtent: 13, extents: 1 },
    ]);
    const pv = { peStartBytes: 1048576, extentBytes: 4194304 };
    expect(lvByteRanges(segs, "rootfs_hash", pv)).toEqual([
      { lvOffset: 0, pvOffset: 1048576 + 13 * 4194304, length: 4194304 },
    ]);
  });
  test("veritysetup format report", () => {
    const r = parseVerityFormat(
      `VERITY header information for x\nUUID:            \tabc\nHash type:       \t1\nData blocks:     \t2560\nData block size: \t4096\nHash block size: \t4096\nHash algorithm:  \tsha256\nSalt:            \t${"ab".repeat(32)}\nRoot hash:      \t${"cd".repeat(32)}\n`,
    );
    expect(r).toEqual({
      rootHash: "cd".repeat(32),
      salt: "ab".repeat(32),
      dataBlocks: 2560,
      hashBlockSize: 4096,
    });
    expect(() => parseVerityFormat("nothing")).toThrow(/no sha256 root hash/);
  });
  test("dm-snapshot COW header magic", () => {
    expect(hasSnapshotCowMagic(new Uint8Array([0x53, 0x6e, 0x41, 0x70, 1, 0, 0, 0]))).toBe(true);
    expect(hasSnapshotCowMagic(new Uint8Array(512))).toBe(false);
  });
  test("sizes", () => {
    expect(parseMemTotal("MemTotal:        2030592 kB\nMemFree: 1 kB\n")).toBe(2030592 * 1024);
    const p = {
      disk: "/dev/vda",
      number: 3,
      startSectors: 2048,
      sizeSectors: 1000,
      diskSectors: 2048 + 1000 + 2048 + 34,
    };
    expect(canGrow(p)).toBe(false);
    expect(canGrow({ ...p, diskSectors: p.diskSectors + 8192 })).toBe(true);
  });
});

/**
 * Issue #14 gap 4: the image, initrd and configuration readers against crafted input. Each case
 * builds its bytes here (nothing downloaded), runs the real reader or the real CLI, and expects a
 * clean one-paragraph error (or a correct result) within generous time and memory bounds. A seeded
 * mutation fuzz loop over small valid images then checks that nothing but an FdeError escapes.
 * CPTEST_FUZZ_ITERS runs the fuzz loop longer.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { readInitrdConfig } from "../../src/config/initrd.ts";
import { findKeyLine } from "../../src/config/issues.ts";
import type { FileTree } from "../../src/disk/image/fs.ts";
import { readLogicalVolumes } from "../../src/disk/image/lvm.ts";
import { openImage } from "../../src/disk/image/open.ts";
import { partitionSource, readPartitions } from "../../src/disk/image/partitions.ts";
import { openTree, probe } from "../../src/disk/image/probe.ts";
import { Qcow2Source } from "../../src/disk/image/qcow2.ts";
import { type BlockSource, checkRange } from "../../src/disk/image/source.ts";
import { ConfigError, FdeError } from "../../src/errors.ts";
import { diskImage, ESP_GPT, ext4Image, LINUX_GPT } from "../../testkit/images.ts";
import { resetPeakRss } from "../../testkit/rss.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { bounded } from "./limits.ts";

setDefaultTimeout(60_000);
const ROOT = join(import.meta.dir, "../../..");
const work = tempDir("hostile-readers");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const t = (name: string) => join(work, name);

/** Each crafted case: at most this long and this much RSS growth (generous: a loaded 2-core box). */
const LIMITS = { ms: 5_000, mib: 300 };
/** A bomb is decompressed up to the 512 MiB cap by design (about 2 s here): more time, same memory. */
const BOMB_LIMITS = { ms: 15_000, mib: 300 };

// ---------------------------------------------------------------------------------------------
// Builders

const enc = new TextEncoder();
const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
/** The parts one after another, in a fresh (unpooled) array. */
const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const pad4 = (n: number) => new Uint8Array((4 - (n % 4)) % 4);

/** One cpio newc member; `fields` overrides header fields by index (e.g. 6: "ZZZZZZZZ"). */
function cpioMember(name: string, data: Uint8Array, mode = 0o100644, fields: Record<number, string> = {}) {
  const nameBytes = enc.encode(`${name}\0`);
  const values = [1, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0].map(hex8);
  for (const [i, v] of Object.entries(fields)) values[Number(i)] = v;
  const header = enc.encode(`070701${values.join("")}`);
  return concat(header, nameBytes, pad4(header.length + nameBytes.length), data, pad4(data.length));
}
const FDE = '[rootfs]\n[delta.encrypt.exec]\ncommand = "printf"\nargs = ["k"]\n';
function cpio(members: Uint8Array[]): Uint8Array {
  return concat(...members, cpioMember("TRAILER!!!", new Uint8Array(0), 0));
}
const configCpio = () =>
  cpio([
    cpioMember("etc", new Uint8Array(0), 0o40755),
    cpioMember("etc/cryptpilot/fde.toml", enc.encode(FDE)),
    cpioMember("usr/lib/x", new Uint8Array(3000).fill(7)),
  ]);

/** lz4 legacy frame of literal-only blocks (valid, uncompressed). */
function lz4LegacyLiterals(data: Uint8Array): Uint8Array {
  const blocks: Uint8Array[] = [new Uint8Array([0x02, 0x21, 0x4c, 0x18])];
  for (let at = 0; at < data.length; at += 4 << 20) {
    const chunk = data.subarray(at, at + (4 << 20));
    const ext: number[] = [];
    let n = chunk.length - 15;
    while (n >= 255) {
      ext.push(255);
      n -= 255;
    }
    ext.push(n);
    const body = concat(new Uint8Array([0xf0, ...ext]), chunk);
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, body.length, true);
    blocks.push(size, body);
  }
  return concat(...blocks);
}

/** An lz4 legacy block that unpacks to one full 8 MiB block from ~33 KB (an RLE match). */
function lz4BombBlock(): Uint8Array {
  const match = (8 << 20) - 2 - 4; // one literal, the match, one final literal
  const ext: number[] = [];
  let n = match - 15;
  while (n >= 255) {
    ext.push(255);
    n -= 255;
  }
  ext.push(n);
  const body = new Uint8Array([0x1f, 0x00, 0x01, 0x00, ...ext, 0x10, 0x00]);
  const size = new Uint8Array(4);
  new DataView(size.buffer).setUint32(0, body.length, true);
  return concat(size, body);
}

/** An in-memory BlockSource: the fuzz loop mutates the bytes in place. */
class MemSource implements BlockSource {
  constructor(
    readonly name: string,
    readonly bytes: Uint8Array,
  ) {}
  get size() {
    return this.bytes.length;
  }
  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    return this.bytes.slice(offset, offset + length);
  }
  close() {}
}

/** Every file of a tree, walked to a small depth, as the reference-value code would touch them. */
function walk(tree: FileTree, dir = "/", depth = 0, budget = { n: 200 }): void {
  if (depth > 4) return;
  for (const e of tree.list(dir)) {
    if (--budget.n < 0) return;
    const path = `${dir === "/" ? "" : dir}/${e.name}`;
    if (e.kind === "dir") walk(tree, path, depth + 1, budget);
    else if (e.kind === "file" || e.kind === "symlink") {
      if (tree.kind(path) === "file") tree.readFile(path);
    }
  }
}

/** What show-reference-value and config dump --disk do with a disk, minus the boot-entry logic. */
function exerciseDisk(disk: BlockSource): void {
  for (const p of readPartitions(disk)) {
    const part = partitionSource(disk, p);
    const content = probe(part);
    if (content === "vfat" || content === "ext4") walk(openTree(part, content));
  }
}

function cli(args: string[], timeout = 20_000) {
  resetPeakRss(); // otherwise an earlier test's peak counts against this child (testkit/rss.ts)
  const p = Bun.spawnSync([process.execPath, join(ROOT, "agent/src/main.ts"), ...args], {
    stderr: "pipe",
    stdout: "pipe",
    timeout,
  });
  return {
    code: p.exitCode,
    stdout: p.stdout.toString(),
    stderr: p.stderr.toString(),
    maxRssMib: (p.resourceUsage?.maxRSS ?? 0) / (1024 * 1024), // Bun reports bytes
  };
}

/** A CLI run on crafted input: non-zero exit, one "error:" paragraph, no stack, bounded. */
function expectCleanFailure(r: ReturnType<typeof cli>, code: number, pattern: RegExp) {
  expect(r.code).toBe(code);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(r.stderr.split("\n").filter((l) => l.startsWith("error:"))).toHaveLength(1);
  expect(r.stderr.length).toBeLessThan(4000);
  expect(r.maxRssMib).toBeLessThan(600);
}

async function expectReject(
  fn: () => unknown,
  pattern: RegExp,
  type: typeof FdeError = FdeError,
  limits = LIMITS,
) {
  const err = await bounded(async () => {
    try {
      await fn();
    } catch (e) {
      return e;
    }
    return undefined;
  }, limits);
  expect(err).toBeInstanceOf(type);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain("\n");
}

// ---------------------------------------------------------------------------------------------
// Valid small images, built once with the real tools

let disk: string;
let diskBytes: Uint8Array;
let fatBytes: Uint8Array;
let ext4Bytes: Uint8Array;
let qcowZlib: Uint8Array;
let qcowZstd: Uint8Array;
let ext4Path: string;

beforeAll(() => {
  // A small FAT12 ESP (the shared fatImage helper makes FAT32, which needs 33 MiB).
  const fat = t("esp.img");
  sh(["mkfs.vfat", "-F", "12", "-C", fat, "2048"]);
  sh(["mmd", "-i", fat, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"]);
  writeFileSync(t("bootx64"), new Uint8Array(5000).fill(1));
  sh(["mcopy", "-i", fat, t("bootx64"), "::/EFI/BOOT/BOOTX64.EFI"]);
  sh(["mkfs.vfat", "-F", "12", "-C", t("fat12.img"), "1024"]);
  sh(["mmd", "-i", t("fat12.img"), "::/EFI", "::/EFI/sub"]);
  sh(["mcopy", "-i", t("fat12.img"), "-", "::/EFI/sub/file.txt"]);
  ext4Path = ext4Image(t("boot.img"), 4, {
    "vmlinuz-6.1": new Uint8Array(20000).fill(2),
    "initrd.img-6.1": new Uint8Array(9000).fill(3),
    "grub/grub.cfg": "linux /vmlinuz-6.1\n",
    sub: { symlink: "grub" },
  });
  disk = diskImage(t("disk.img"), "gpt", [
    { sizeMiB: 2, type: ESP_GPT, name: "EFI System Partition", image: fat },
    { sizeMiB: 4, type: LINUX_GPT, name: "boot", image: ext4Path },
  ]);
  diskBytes = new Uint8Array(readFileSync(disk));
  fatBytes = new Uint8Array(readFileSync(t("fat12.img")));
  ext4Bytes = new Uint8Array(readFileSync(ext4Path));
  sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", disk, t("zlib.qcow2")]);
  sh([
    "qemu-img",
    "convert",
    "-c",
    "-O",
    "qcow2",
    "-o",
    "cluster_size=4096,compression_type=zstd",
    disk,
    t("zstd.qcow2"),
  ]);
  qcowZlib = new Uint8Array(readFileSync(t("zlib.qcow2")));
  qcowZstd = new Uint8Array(readFileSync(t("zstd.qcow2")));
}, 60_000);

// ---------------------------------------------------------------------------------------------
// Crafted cases

describe("initrd (cpio, gzip, zstd, lz4)", () => {
  test("the valid initrds used below read correctly", async () => {
    for (const image of [
      configCpio(),
      gzipSync(configCpio()),
      zstdCompressSync(configCpio()),
      lz4LegacyLiterals(configCpio()),
    ]) {
      const found = await bounded(() => readInitrdConfig(image, "ok.img"), LIMITS);
      expect(found["fde.toml"]).toBe(FDE);
    }
  });

  test("cpio size field ZZZZZZZZ (NaN) and a negative size: a clear error, no endless restart", async () => {
    const nan = cpio([cpioMember("etc/cryptpilot/fde.toml", enc.encode(FDE), 0o100644, { 6: "ZZZZZZZZ" })]);
    await expectReject(
      () => readInitrdConfig(nan, "nan.img"),
      /nan.img: damaged cpio archive at byte 0: the header has a non-hex c_filesize field \('ZZZZZZZZ'\)/,
      ConfigError,
    );
    const neg = cpio([cpioMember("a", enc.encode("x"), 0o100644, { 11: "-0000010" })]);
    await expectReject(() => readInitrdConfig(neg, "neg.img"), /non-hex c_namesize/, ConfigError);
    const huge = cpio([cpioMember("a", enc.encode("x"), 0o100644, { 6: "FFFFFFFF" })]);
    await expectReject(() => readInitrdConfig(huge, "huge.img"), /ends inside a member's data/, ConfigError);
    const name = cpio([cpioMember("a", enc.encode("x"), 0o100644, { 11: "7FFFFFFF" })]);
    await expectReject(() => readInitrdConfig(name, "name.img"), /c_namesize is 2147483647/, ConfigError);
  });

  test("zstd bomb (33 KB of frames -> 600 MiB) stops at the cap with small memory", async () => {
    const frame = zstdCompressSync(new Uint8Array(1 << 20));
    const bomb = concat(configCpio(), ...Array<Uint8Array>(600).fill(frame));
    expect(bomb.length).toBeLessThan(100_000);
    await expectReject(
      () => readInitrdConfig(bomb, "bomb.img"),
      /unpacks to more than 536870912 bytes/,
      ConfigError,
      BOMB_LIMITS,
    );
  });

  test("gzip bomb (600 members of 1 MiB of zeros) stops at the cap", async () => {
    const member = gzipSync(new Uint8Array(1 << 20));
    const bomb = concat(...Array<Uint8Array>(600).fill(member));
    await expectReject(
      () => readInitrdConfig(bomb, "gz.img"),
      /unpacks to more than/,
      ConfigError,
      BOMB_LIMITS,
    );
  });

  test("lz4 bomb (8 MiB runs from 33 KB blocks) stops at the cap", async () => {
    const block = lz4BombBlock();
    const bomb = concat(new Uint8Array([0x02, 0x21, 0x4c, 0x18]), ...Array<Uint8Array>(70).fill(block));
    await expectReject(
      () => readInitrdConfig(bomb, "lz4.img"),
      /unpacks to more than/,
      ConfigError,
      BOMB_LIMITS,
    );
  });

  test("a cpio config file larger than 1 MiB, and a nested compressed stream, are refused", async () => {
    const big = cpio([cpioMember("etc/cryptpilot/fde.toml", new Uint8Array(2 << 20).fill(0x61))]);
    await expectReject(
      () => readInitrdConfig(big, "big.img"),
      /fde.toml is 2097152 bytes, larger than the 1048576-byte limit/,
      ConfigError,
    );
    const nested = gzipSync(gzipSync(configCpio()));
    await expectReject(
      () => readInitrdConfig(nested, "nested.img"),
      /unexpected data at byte 0 of the decompressed archive/,
      ConfigError,
    );
  });

  test("CLI: config dump --initrd on a crafted cpio, a FIFO and /dev/zero", () => {
    const nan = t("nan.cpio");
    writeFileSync(nan, cpio([cpioMember("x", enc.encode("y"), 0o100644, { 6: "ZZZZZZZZ" })]));
    expectCleanFailure(cli(["config", "dump", "--initrd", nan]), 2, /non-hex c_filesize/);
    const fifo = t("initrd.fifo");
    sh(["mkfifo", fifo]);
    expectCleanFailure(
      cli(["config", "dump", "--initrd", fifo]),
      2,
      /initrd.fifo is a FIFO, not a regular file/,
    );
    expectCleanFailure(
      cli(["config", "dump", "--initrd", "/dev/zero"]),
      2,
      /\/dev\/zero is a character device/,
    );
  });
});

/** qcow2 header fields (big-endian) patched into a copy of a valid image. */
function patchBe(bytes: Uint8Array, offset: number, value: number, width: 4 | 8 = 4): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  if (width === 4) view.setUint32(offset, value >>> 0, false);
  else view.setBigUint64(offset, BigInt(value), false);
  return out;
}
const noBacking = () => {
  throw new Error("no backing expected");
};

describe("qcow2", () => {
  test("the valid qcow2 images read correctly (zlib and zstd clusters)", async () => {
    for (const q of [qcowZlib, qcowZstd]) {
      const src = new Qcow2Source("q.qcow2", new MemSource("q.qcow2", q), noBacking);
      await bounded(async () => exerciseDisk(src), LIMITS);
      expect(Buffer.from(src.read(0, diskBytes.length)).equals(Buffer.from(diskBytes))).toBe(true);
    }
  });

  test("a header extension of length 0xFFFFFFFF", async () => {
    // Version 3 header is 112 bytes here; the first extension starts at header_length.
    const headerLength = new DataView(qcowZlib.buffer).getUint32(100, false);
    const bad = patchBe(patchBe(qcowZlib, headerLength, 0x12345678), headerLength + 4, 0xffffffff);
    await expectReject(
      () => new Qcow2Source("disk.qcow2", new MemSource("disk.qcow2", bad), noBacking),
      new RegExp(
        `disk.qcow2: qcow2 header extension at byte ${headerLength} has length 4294967295, beyond the header cluster`,
      ),
    );
  });

  test("an L1 table of 2^27 entries: only what the virtual size needs is read; a huge size is refused", async () => {
    const wide = patchBe(qcowZlib, 36, 2 ** 27);
    const src = await bounded(
      async () => new Qcow2Source("w.qcow2", new MemSource("w.qcow2", wide), noBacking),
      LIMITS,
    );
    expect(Buffer.from(src.read(0, 4096)).equals(Buffer.from(diskBytes.subarray(0, 4096)))).toBe(true);
    const huge = patchBe(patchBe(qcowZlib, 36, 2 ** 27), 24, 2 ** 52, 8);
    await expectReject(
      () => new Qcow2Source("h.qcow2", new MemSource("h.qcow2", huge), noBacking),
      /beyond qemu's maximum/,
    );
  });

  test("a compressed cluster that inflates past one cluster is refused", async () => {
    // Replace the first compressed cluster's stream with a deflate bomb of the same length class.
    const src = new Qcow2Source("q.qcow2", new MemSource("q.qcow2", qcowZlib), noBacking);
    expect(src.read(0, 512).length).toBe(512);
    const { deflateRawSync } = await import("node:zlib");
    const bomb = deflateRawSync(new Uint8Array(64 << 20));
    expect(bomb.length).toBeLessThan(512 * 256);
    // Find the L2 entry of guest cluster 0: L1[0] -> L2 table, entry 0.
    const v = new DataView(qcowZlib.buffer);
    const l1 = Number(v.getBigUint64(40, false));
    const l2 = Number(v.getBigUint64(l1, false) & 0x00fffffffffffe00n);
    const entry = v.getBigUint64(l2, false);
    expect(entry & (1n << 62n)).toBe(1n << 62n); // compressed
    const offsetBits = 62n - (12n - 8n);
    const host = Number(entry & ((1n << offsetBits) - 1n));
    const crafted = concat(qcowZlib.subarray(0, host), bomb.subarray(0, Math.min(bomb.length, 4096 * 2)));
    const fixed = concat(crafted, new Uint8Array(Math.max(0, qcowZlib.length - crafted.length)));
    const bad = new Qcow2Source("b.qcow2", new MemSource("b.qcow2", fixed), noBacking);
    await expectReject(() => bad.read(0, 512), /compressed cluster at host offset .* does not decompress/);
  });

  const overlay = (name: string, backing: string) => {
    const path = t(name);
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "qcow2", path, "16M"]);
    return path;
  };

  test("backing files that are FIFOs, devices, another user's private file, or a cycle", async () => {
    const fifo = t("backing.fifo");
    sh(["mkfifo", fifo]);
    await expectReject(
      () => openImage(overlay("fifo.qcow2", "backing.fifo")),
      /backing.fifo is a FIFO, not a regular file/,
    );
    await expectReject(
      () => openImage(overlay("zero.qcow2", "/dev/zero")),
      /\/dev\/zero is a character device, not a regular file/,
    );
    await expectReject(() => openImage(overlay("dir.qcow2", "/etc")), /\/etc is a directory/);
    // /etc/shadow as a raw backing file of an image another user hands to root.
    const secret = t("secret");
    writeFileSync(secret, "root:$6$hash\n");
    chmodSync(secret, 0o600);
    const shadow = t("shadow.qcow2");
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", secret, "-F", "raw", shadow, "16M"]);
    if (process.getuid?.() === 0) {
      chownSync(shadow, 65534, 65534);
      await expectReject(
        () => openImage(shadow),
        /belongs to uid 0 and is not world-readable, while the image belongs to uid 65534/,
      );
    }
    overlay("cycle-a.qcow2", "cycle-b.qcow2");
    overlay("cycle-b.qcow2", "cycle-a.qcow2");
    await expectReject(
      () => openImage(t("cycle-a.qcow2")),
      /backing chain loops \(.*cycle-a.qcow2 -> .*cycle-b.qcow2 -> .*cycle-a.qcow2\)/,
    );
    const r = cli(["show-reference-value", "--disk", t("cycle-a.qcow2")]);
    expectCleanFailure(r, 1, /backing chain loops/);
    expect(r.stderr.split("\n").length).toBeLessThan(6);
  });

  test("CLI: --disk naming a FIFO or /dev/zero is refused at once", () => {
    const fifo = t("disk.fifo");
    sh(["mkfifo", fifo]);
    expectCleanFailure(
      cli(["show-reference-value", "--disk", fifo]),
      1,
      /disk.fifo is a FIFO, not a regular file or block device/,
    );
    expectCleanFailure(
      cli(["config", "dump", "--disk", "/dev/zero"]),
      1,
      /\/dev\/zero is a character device/,
    );
  });

  test("a backing chain deeper than the limit is refused; a short one reads", async () => {
    let prev = "chain-0.qcow2";
    sh(["qemu-img", "create", "-q", "-f", "qcow2", t(prev), "16M"]);
    for (let i = 1; i <= 20; i++)
      prev = overlay(`chain-${i}.qcow2`, `chain-${i - 1}.qcow2`)
        .split("/")
        .at(-1)!;
    await expectReject(() => openImage(t("chain-20.qcow2")), /backing chain is longer than 16 images/);
    const ok = openImage(t("chain-3.qcow2"));
    expect(ok.read(0, 512).every((b) => b === 0)).toBe(true);
    ok.close();
  });
});

describe("partition tables and filesystems", () => {
  /** GPT header field at LBA 1 (little-endian). */
  const patchLe = (bytes: Uint8Array, offset: number, value: number) => {
    const out = bytes.slice();
    new DataView(out.buffer).setUint32(offset, value, true);
    return out;
  };

  test("a GPT entry array of 1 GiB is refused before it is read", async () => {
    const bad = patchLe(patchLe(diskBytes, 512 + 80, 0x80000), 512 + 84, 2048);
    await expectReject(
      () => readPartitions(new MemSource("g.img", bad)),
      /g.img: GPT header describes a partition entry array of 524288 x 2048 bytes/,
    );
  });

  test("partition names with terminal escape sequences are printed escaped", () => {
    // Partition 1's name (UTF-16LE at entry offset 56), on a disk with no ESP type so the error lists names.
    const bytes = diskBytes.slice();
    const entries = 1024; // LBA 2
    const name = "\x1b]0;pwned\x07\x1b[2J";
    for (let i = 0; i < 36; i++)
      new DataView(bytes.buffer).setUint16(entries + 56 + i * 2, name.charCodeAt(i) || 0, true);
    bytes.set(new Uint8Array(16).fill(0x11), entries); // not the ESP type GUID
    bytes.set(new Uint8Array(16).fill(0x11), entries + 128); // partition 2: no ext4 named "boot"... still found by content
    // Wipe the FAT boot sector signature so no ESP is found at all.
    const part1 = 2048 * 512;
    bytes[part1 + 510] = 0;
    const path = t("escape.img");
    writeFileSync(path, bytes);
    const r = cli(["show-reference-value", "--disk", path]);
    expectCleanFailure(r, 1, /no EFI system partition/);
    expect(r.stderr).not.toContain("\x1b");
    expect(r.stderr).not.toContain("\x07");
    expect(r.stderr).toContain("\\x1b]0;pwned\\x07\\x1b[2J");
  });

  test("FAT: a cluster chain that loops, and subdirectories pointing back at the root", async () => {
    const vol = (b: Uint8Array) => openTree(new MemSource("fat.img", b), "vfat");
    // FAT12: cluster of /EFI is the first data cluster (2); point its FAT entry at itself.
    const tree = vol(fatBytes);
    expect(tree.list("/EFI/sub").map((e) => e.name)).toEqual(["file.txt"]);
    const loop = fatBytes.slice();
    const fatAt = 512; // one reserved sector
    // FAT12 entry 2 at byte 3 (low 12 bits of bytes 3-4): 0x002 -> 2 (itself).
    loop[fatAt + 3] = 0x02;
    loop[fatAt + 4] = (loop[fatAt + 4]! & 0xf0) | 0x00;
    await expectReject(() => vol(loop).list("/EFI"), /cluster chain from cluster 2 loops at cluster 2/);
    // /EFI/sub's directory entry pointing at the root (cluster 0): a directory cycle.
    const cyc = fatBytes.slice();
    const dataStart = findDirEntry(cyc, "SUB        ");
    cyc[dataStart + 26] = 0;
    cyc[dataStart + 27] = 0;
    await expectReject(
      () => walk(vol(cyc)),
      /directory entry 'sub' points to a directory that already has another parent/i,
    );
  });

  test("ext4: an extent tree with fan-out pointing at shared nodes, and a depth beyond 5", async () => {
    const { ino, at } = inodeOf(ext4Path, "/vmlinuz-6.1");
    const blockSize = 4096;
    const bytes = ext4Bytes.slice();
    const dv = new DataView(bytes.buffer);
    // Blocks near the end of the 4 MiB filesystem are free: build a chain of index nodes, each
    // level with every slot pointing at the next level's single node (340^4 leaves in the old code).
    const nodes = [1000, 1001, 1002, 1003, 1004];
    const header = (o: number, entries: number, max: number, depth: number) => {
      dv.setUint16(o, 0xf30a, true);
      dv.setUint16(o + 2, entries, true);
      dv.setUint16(o + 4, max, true);
      dv.setUint16(o + 6, depth, true);
    };
    const perBlock = (blockSize - 12) / 12;
    for (let level = 0; level < nodes.length; level++) {
      const o = nodes[level]! * blockSize;
      const depth = 4 - level;
      header(o, perBlock, perBlock, depth);
      for (let i = 0; i < perBlock; i++) {
        const e = o + 12 + i * 12;
        dv.setUint32(e, i, true);
        if (depth === 0) {
          dv.setUint16(e + 4, 1, true);
          dv.setUint32(e + 8, 500, true);
        } else dv.setUint32(e + 4, nodes[level + 1]!, true);
      }
    }
    const iblock = at + 0x28;
    header(iblock, 4, 4, 5);
    for (let i = 0; i < 4; i++) {
      dv.setUint32(iblock + 12 + i * 12, i, true);
      dv.setUint32(iblock + 12 + i * 12 + 4, nodes[0]!, true);
      dv.setUint32(iblock + 12 + i * 12 + 8, 0, true); // ei_leaf_hi and padding
    }
    const tree = () => openTree(new MemSource("e.img", bytes), "ext4");
    await expectReject(
      () => tree().readFile("/vmlinuz-6.1"),
      new RegExp(`inode ${ino} has a corrupt extent tree \\(more`),
    );
    header(iblock, 4, 4, 6);
    await expectReject(() => tree().readFile("/vmlinuz-6.1"), /corrupt extent tree \(depth 6\)/);
  });

  test("ext4: a file claiming 2^40 bytes is refused before it is allocated", async () => {
    const { at } = inodeOf(ext4Path, "/vmlinuz-6.1");
    const bytes = ext4Bytes.slice();
    new DataView(bytes.buffer).setUint32(at + 0x6c, 256, true); // i_size_high: 2^40
    await expectReject(
      () => openTree(new MemSource("e.img", bytes), "ext4").readFile("/vmlinuz-6.1"),
      /larger than the 536870912-byte limit/,
    );
  });
});

describe("LVM metadata", () => {
  const UUID = "abcdefghijklmnopqrstuvwxyz012345";
  const text = (extentCount: string) =>
    `vg {\nextent_size = 8\nphysical_volumes {\npv0 {\nid = "${UUID.slice(0, 6)}-${UUID.slice(6)}"\npe_start = 2048\n}\n}\nlogical_volumes {\nlv {\nsegment1 {\nstart_extent = 0\nextent_count = ${extentCount}\ntype = "striped"\nstripe_count = 1\nstripes = ["pv0", 0]\n}\n}\n}\n}\n`;
  /** A PV label, one metadata area at 4 KiB holding `meta`, data at 1 MiB, on a `size`-byte device. */
  function pv(meta: string, o: { size?: number; mdaSize?: number; locSize?: number } = {}): MemSource {
    const bytes = new Uint8Array(o.size ?? 2 << 20);
    const dv = new DataView(bytes.buffer);
    bytes.set(enc.encode("LABELONE"), 512);
    dv.setUint32(512 + 20, 32, true);
    bytes.set(enc.encode("LVM2 001"), 512 + 24);
    const label = 512 + 32;
    bytes.set(enc.encode(UUID), label);
    dv.setBigUint64(label + 40, 1n << 20n, true); // data area, then a zero terminator
    dv.setBigUint64(label + 72, 4096n, true); // metadata area offset
    dv.setBigUint64(label + 80, BigInt(o.mdaSize ?? 1 << 19), true);
    bytes.set(enc.encode(" LVM2 x[5A%r0N*>"), 4096 + 4);
    dv.setBigUint64(4096 + 40, 512n, true);
    const textBytes = enc.encode(meta);
    dv.setBigUint64(4096 + 48, BigInt(o.locSize ?? textBytes.length), true);
    bytes.set(textBytes, 4096 + 512);
    bytes.fill(0x5a, 1 << 20, (1 << 20) + 8192);
    return new MemSource("pv.img", bytes);
  }

  test("a valid PV maps its LV; crafted area sizes and extent counts are refused", async () => {
    const [lv] = readLogicalVolumes(pv(text("2")));
    expect(lv!.source.size).toBe(8192);
    expect(lv!.source.read(0, 8192).every((b) => b === 0x5a)).toBe(true);
    await expectReject(
      () => readLogicalVolumes(pv(text("2"), { mdaSize: 2 ** 40 })),
      /pv.img: LVM metadata area \(1099511627776 bytes at byte 4096\) is too small or past the end of the PV/,
    );
    await expectReject(
      () => readLogicalVolumes(pv(text("2"), { size: 32 << 20, mdaSize: 16 << 20, locSize: 8 << 20 })),
      /larger than 4194304 bytes/,
    );
    await expectReject(
      () => readLogicalVolumes(pv(text('"x"'))),
      /LV vg\/lv segment1 field extent_count is not a valid count \(x\)/,
    );
    await expectReject(
      () => readLogicalVolumes(pv(text("4000000"))),
      /LV vg\/lv segment1 maps past the end of the PV/,
    );
  });
});

/** Byte offset of the 8.3 directory entry `name83` (11 chars, padded) anywhere in a FAT image. */
function findDirEntry(bytes: Uint8Array, name83: string): number {
  const want = enc.encode(name83);
  for (let o = 0; o + 32 <= bytes.length; o += 32) {
    if (want.every((b, i) => bytes[o + i] === b) && bytes[o + 11]! & 0x10) return o;
  }
  throw new Error(`no directory entry ${name83}`);
}

/**
 * Where an ext4 image keeps its live metadata: superblock, group descriptors, the first inodes
 * (root, the files made here) and the directory blocks, as [start, length] ranges from `base`.
 */
function ext4Metadata(image: string, base: number): [number, number][] {
  const block = (n: string) => Number(n) * 4096;
  const table = /inode table at (\d+)/i.exec(sh(["debugfs", "-R", "stats", image]))!;
  const dirs = ["/", "/grub"].flatMap((d) =>
    sh(["debugfs", "-R", `blocks ${d}`, image])
      .trim()
      .split(/\s+/),
  );
  return [
    [base + 1024, 1024],
    [base + 4096, 4096],
    [base + block(table[1]!), 32 * 256],
    ...dirs.map((b): [number, number] => [base + block(b), 4096]),
  ];
}

/** Inode number and byte offset of `path` in an ext4 image, from debugfs. */
function inodeOf(image: string, path: string): { ino: number; at: number } {
  const out = sh(["debugfs", "-R", `imap ${path}`, image]);
  const m = /Inode (\d+) is part of block group \d+\s+located at block (\d+), offset 0x([0-9a-f]+)/.exec(
    out,
  )!;
  return { ino: Number(m[1]), at: Number(m[2]) * 4096 + Number.parseInt(m[3]!, 16) };
}

describe("configuration files", () => {
  test("the line finder is linear: 8,000 spaces and long quoted keys take milliseconds", async () => {
    const lines = [
      " ".repeat(8000),
      `${" ".repeat(8000)}=`,
      `${"a ".repeat(4000)}= 1`,
      `[${" ".repeat(8000)}`,
      `${'"a" '.repeat(3000)}`,
      `[rootfs]\n${" ".repeat(8000)}x${" ".repeat(8000)}= 1`,
    ];
    await bounded(
      async () => {
        for (const text of lines) findKeyLine(`${text}\n${text}`, ["rootfs", "x"]);
      },
      { ms: 2000, mib: 100 },
    );
    expect(findKeyLine('[rootfs]\n  "x" . y = 1\n', ["rootfs", "x", "y"])).toBe(2);
  });

  test("CLI: fde.toml as a FIFO, /dev/zero, a directory or 2 MiB; a missing config dir", () => {
    const cases: [string, (p: string) => void, RegExp][] = [
      ["fifo", (p) => sh(["mkfifo", p]), /fde.toml is a FIFO, not a regular file/],
      ["zero", (p) => symlinkSync("/dev/zero", p), /fde.toml is a character device, not a regular file/],
      ["dir", (p) => mkdirSync(p), /fde.toml is a directory, not a regular file/],
      [
        "big",
        (p) => writeFileSync(p, `# ${"x".repeat(2 << 20)}\n`),
        /fde.toml is \d+ bytes, larger than the 1048576-byte limit/,
      ],
    ];
    for (const [name, make, pattern] of cases) {
      const dir = t(`cfg-${name}`);
      mkdirSync(dir);
      make(join(dir, "fde.toml"));
      expectCleanFailure(cli(["-c", dir, "config", "check", "--skip-check-passphrase"]), 2, pattern);
    }
    expectCleanFailure(
      cli(["-c", t("nonexistent"), "config", "check", "--skip-check-passphrase"]),
      2,
      /configuration directory .*nonexistent cannot be read/,
    );
  });

  test("CLI: a config error on a line of 8,000 spaces is reported fast with its line", () => {
    const dir = t("cfg-spaces");
    mkdirSync(dir);
    writeFileSync(join(dir, "fde.toml"), `${" ".repeat(8000)}\n[rootfs]\n${" ".repeat(8000)}bogus = 1\n`);
    const started = performance.now();
    const r = cli(["-c", dir, "config", "check", "--skip-check-passphrase"]);
    expect(performance.now() - started).toBeLessThan(10_000);
    expectCleanFailure(r, 2, /fde.toml line 3: rootfs.bogus: unknown field/);
  });
});

// ---------------------------------------------------------------------------------------------
// Seeded mutation fuzzing

/** xorshift32: the same seed gives the same run, so a failure reproduces. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

/**
 * Offsets worth mutating: the non-zero bytes (the structures actually in use) inside the
 * [start, length] ranges where a format's headers and tables live.
 */
function liveBytes(bytes: Uint8Array, ranges: [number, number][]): number[] {
  const out: number[] = [];
  for (const [start, length] of ranges)
    for (let o = start; o < Math.min(bytes.length - 4, start + length); o++) if (bytes[o] !== 0) out.push(o);
  return out;
}

/**
 * Overwrite a few bytes or 32-bit fields, mostly at `hot` offsets (see liveBytes), sometimes
 * anywhere. Returns what to write back.
 */
function mutate(bytes: Uint8Array, hot: number[], next: () => number): [number, Uint8Array][] {
  const undo: [number, Uint8Array][] = [];
  const count = 1 + (next() % 4);
  for (let k = 0; k < count; k++) {
    const at = next() % 4 === 0 || hot.length === 0 ? next() % (bytes.length - 4) : hot[next() % hot.length]!;
    undo.push([at, new Uint8Array(bytes.subarray(at, at + 4))]); // a copy (Buffer#slice is a view)
    const v = next() % 3 === 0 ? next() : INTERESTING[next() % INTERESTING.length]!;
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    if (next() % 2) dv.setUint32(at, v >>> 0, next() % 2 === 0);
    else bytes[at] = v & 0xff;
  }
  return undo.reverse();
}

describe("fuzz", () => {
  const iterations = Number(process.env.CPTEST_FUZZ_ITERS ?? 300);

  test(`${iterations} seeded mutations of cpio/gzip/zstd/lz4 initrds, GPT, qcow2, FAT and ext4`, async () => {
    const cpioBase = configCpio();
    const MiB = 1 << 20;
    const all = (b: Uint8Array): [number, number][] => [[0, b.length]];
    const hotOf = (bytes: Uint8Array, ranges: [number, number][]) => liveBytes(bytes, ranges);
    // The disk's ESP starts at 1 MiB and /boot at 3 MiB (sfdisk's default alignment).
    const diskHot: [number, number][] = [[0, 17408], [MiB, 16384], ...ext4Metadata(ext4Path, 3 * MiB)];
    const qcowHot: [number, number][] = [[0, 65536]];
    const targets: {
      name: string;
      bytes: Uint8Array;
      hot: [number, number][];
      run: (b: Uint8Array) => Promise<unknown>;
    }[] = [
      { name: "cpio", bytes: cpioBase, hot: all(cpioBase), run: (b) => readInitrdConfig(b, "f.img") },
      {
        name: "gzip",
        bytes: concat(cpioBase, gzipSync(cpioBase)),
        hot: [[0, 8192]],
        run: (b) => readInitrdConfig(b, "f.img"),
      },
      {
        name: "zstd",
        bytes: new Uint8Array(zstdCompressSync(cpioBase)),
        hot: [[0, 512]],
        run: (b) => readInitrdConfig(b, "f.img"),
      },
      {
        name: "lz4",
        bytes: lz4LegacyLiterals(cpioBase),
        hot: [[0, 8192]],
        run: (b) => readInitrdConfig(b, "f.img"),
      },
      {
        name: "gpt",
        bytes: diskBytes.slice(),
        hot: diskHot,
        run: async (b) => exerciseDisk(new MemSource("d.img", b)),
      },
      {
        name: "qcow2-zlib",
        bytes: qcowZlib.slice(),
        hot: qcowHot,
        run: async (b) => exerciseDisk(new Qcow2Source("q.qcow2", new MemSource("q.qcow2", b), noBacking)),
      },
      {
        name: "qcow2-zstd",
        bytes: qcowZstd.slice(),
        hot: qcowHot,
        run: async (b) => exerciseDisk(new Qcow2Source("z.qcow2", new MemSource("z.qcow2", b), noBacking)),
      },
      {
        name: "fat",
        bytes: fatBytes.slice(),
        hot: [[0, 16384]],
        run: async (b) => walk(openTree(new MemSource("f.img", b), "vfat")),
      },
      {
        name: "ext4",
        bytes: ext4Bytes.slice(),
        hot: ext4Metadata(ext4Path, 0),
        run: async (b) => walk(openTree(new MemSource("e.img", b), "ext4")),
      },
    ];
    const hot = new Map(targets.map((x) => [x, hotOf(x.bytes, x.hot)]));
    const unexpected: string[] = [];
    const next = rng(0x5eed14);
    let slowest = 0;
    await bounded(
      async () => {
        for (let i = 0; i < iterations; i++) {
          const target = targets[i % targets.length]!;
          const undo = mutate(target.bytes, hot.get(target)!, next);
          const started = performance.now();
          try {
            await target.run(target.bytes);
          } catch (err) {
            if (!(err instanceof FdeError))
              unexpected.push(`${target.name} #${i}: ${(err as Error)?.stack ?? err}`);
          } finally {
            slowest = Math.max(slowest, performance.now() - started);
            for (const [at, old] of undo) target.bytes.set(old, at);
          }
        }
      },
      { ms: 25_000, mib: 400 },
    );
    expect(unexpected.slice(0, 5)).toEqual([]);
    expect(slowest).toBeLessThan(3_000);
  }, 60_000);
});

/**
 * The image readers against images made here by the real tools, compared byte for byte with the
 * files that went in: sfdisk (GPT with partitions >= 10, MBR with logical partitions), mkfs.vfat
 * + mcopy (FAT12/16/32), mkfs.ext4/mkfs.ext2 -d, qemu-img (qcow2, compressed zlib and zstd,
 * backing files), and LVM (pvcreate/vgcreate/lvcreate --driverloaded n on a loop device).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FileTree } from "../../src/disk/image/fs.ts";
import { readLogicalVolumes } from "../../src/disk/image/lvm.ts";
import { openImage } from "../../src/disk/image/open.ts";
import { partitionSource, readPartitions } from "../../src/disk/image/partitions.ts";
import { openTree, probe } from "../../src/disk/image/probe.ts";
import { copyToSector } from "../../testkit/images.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { bytes, type Sample, writeSample } from "./util.ts";

const work = tempDir("image");
afterAll(() => rmSync(work, { recursive: true, force: true }));

function expectTree(tree: FileTree, sample: Sample) {
  for (const [path, data] of sample.files) {
    expect(Buffer.from(tree.readFile(path)).equals(Buffer.from(data))).toBe(true);
  }
  for (const [link, target] of sample.links) {
    expect(Buffer.from(tree.readFile(link)).equals(Buffer.from(sample.files.get(target)!))).toBe(true);
  }
}

function fatImage(bits: 12 | 16 | 32, sizeMiB: number): { path: string; sample: Sample } {
  const src = join(work, `fat${bits}-src`);
  const sample = writeSample(src, { symlinks: false, manyFiles: 40 });
  const path = join(work, `fat${bits}.img`);
  sh(["truncate", "-s", `${sizeMiB}M`, path]);
  sh(["mkfs.vfat", "-F", String(bits), "-n", "ESP", path]);
  sh([
    "mcopy",
    "-s",
    "-i",
    path,
    ...["EFI", "deep", "many", "empty", "one", "vmlinuz-6.1.0-56-amd64"].map((f) => join(src, f)),
    "::/",
  ]);
  return { path, sample };
}

function ext4Image(
  name: string,
  args: string[],
  opts: { manyFiles: number },
): { path: string; sample: Sample } {
  const src = join(work, `${name}-src`);
  const sample = writeSample(src, { symlinks: true, manyFiles: opts.manyFiles });
  const path = join(work, `${name}.img`);
  sh(["mkfs.ext4", "-q", "-F", ...args, "-d", src, path, "32M"]);
  return { path, sample };
}

describe("filesystems", () => {
  for (const bits of [12, 16, 32] as const) {
    test(`FAT${bits} with long names`, () => {
      const { path, sample } = fatImage(bits, bits === 32 ? 40 : bits === 16 ? 20 : 8);
      const dev = openImage(path);
      expect(probe(dev)).toBe("vfat");
      const tree = openTree(dev, "vfat");
      expectTree(tree, sample);
      expect(tree.kind("/efi/boot/bootx64.efi")).toBe("file"); // FAT lookups ignore case
      expect(tree.list("/EFI/debian").map((e) => e.name)).toContain("A very long file name with spaces.cfg");
      expect(tree.list("/many")).toHaveLength(40);
    });
  }

  test("ext4 (4 KiB blocks, extents, htree directory, symlinks)", () => {
    const { path, sample } = ext4Image("ext4", ["-b", "4096"], { manyFiles: 600 });
    // mke2fs -d writes linear directories; e2fsck -D rebuilds large ones as hash-tree indexes.
    Bun.spawnSync(["e2fsck", "-fyD", path], { stdout: "ignore", stderr: "ignore" });
    const htree = sh(["debugfs", "-R", "htree /many", path]);
    expect(htree).toContain("Root node dump"); // the directory really is indexed
    const tree = openTree(openImage(path), "ext4");
    expectTree(tree, sample);
    expect(tree.list("/many")).toHaveLength(600);
  });

  test("ext2 (1 KiB blocks, indirect block maps)", () => {
    const { path, sample } = ext4Image("ext2", ["-t", "ext2", "-b", "1024"], { manyFiles: 5 });
    expect(sh(["debugfs", "-R", "stat /vmlinuz-6.1.0-56-amd64", path])).toContain("(IND)");
    expectTree(openTree(openImage(path), "ext4"), sample);
  });
});

describe("disks", () => {
  // 12 GPT partitions: the ESP is number 11 and the ext4 /boot number 12 (GRUB names them gpt11, gpt12).
  const gptPath = join(work, "gpt.img");
  const esp = fatImage(32, 40);
  const boot = ext4Image("boot", ["-b", "4096"], { manyFiles: 3 });
  const layout = [
    "label: gpt",
    ...Array.from({ length: 10 }, (_, i) => `size=1MiB, name="p${i + 1}"`),
    'size=40MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System"',
    'size=32MiB, type=0FC63DAF-8483-4772-8E79-3D69E4C7DE9A, name="boot"',
  ].join("\n");

  function buildGpt() {
    sh(["truncate", "-s", "90M", gptPath]);
    sh(["sfdisk", "-q", gptPath], layout);
    const parts = JSON.parse(sh(["sfdisk", "-J", gptPath])).partitiontable.partitions as { start: number }[];
    copyToSector(esp.path, gptPath, parts[10]!.start);
    copyToSector(boot.path, gptPath, parts[11]!.start);
  }

  test("GPT with partitions >= 10, raw and qcow2 (plain, zlib, zstd, backing file)", () => {
    buildGpt();
    const qcow = (name: string, args: string[]) => {
      const out = join(work, name);
      sh(["qemu-img", "convert", ...args, "-O", "qcow2", gptPath, out]);
      return out;
    };
    const zlib = qcow("gpt-zlib.qcow2", ["-c"]);
    const zstd = qcow("gpt-zstd.qcow2", ["-c", "-o", "compression_type=zstd"]);
    const plain = qcow("gpt.qcow2", []);
    const overlay = join(work, "gpt-overlay.qcow2");
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "gpt-zstd.qcow2", "-F", "qcow2", overlay]);
    for (const image of [gptPath, plain, zlib, zstd, overlay]) {
      const disk = openImage(image);
      const parts = readPartitions(disk);
      expect(parts.map((p) => p.number)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      const [espPart, bootPart] = [parts[10]!, parts[11]!];
      expect(espPart.type).toBe("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
      expect(bootPart.name).toBe("boot");
      const espDev = partitionSource(disk, espPart);
      const bootDev = partitionSource(disk, bootPart);
      expect([probe(espDev), probe(bootDev)]).toEqual(["vfat", "ext4"]);
      expectTree(openTree(espDev, "vfat"), esp.sample);
      expectTree(openTree(bootDev, "ext4"), boot.sample);
      disk.close();
    }
  });

  test("MBR with logical partitions", () => {
    const path = join(work, "mbr.img");
    sh(["truncate", "-s", "80M", path]);
    sh(
      ["sfdisk", "-q", path],
      "label: dos\nsize=2MiB\nsize=2MiB\ntype=5\nsize=40MiB, type=ef\nsize=32MiB, type=83\n",
    );
    const parts = JSON.parse(sh(["sfdisk", "-J", path])).partitiontable.partitions as {
      node: string;
      start: number;
    }[];
    const byNumber = (n: number) => parts.find((p) => p.node.endsWith(String(n)))!;
    copyToSector(esp.path, path, byNumber(5).start);
    copyToSector(boot.path, path, byNumber(6).start);
    const disk = openImage(path);
    const read = readPartitions(disk);
    expect(read.map((p) => [p.number, p.start / 512])).toEqual(
      [1, 2, 5, 6].map((n) => [n, byNumber(n).start]),
    );
    expectTree(openTree(partitionSource(disk, read[2]!), "vfat"), esp.sample);
    expectTree(openTree(partitionSource(disk, read[3]!), "ext4"), boot.sample);
  });

  test("not a disk: one clear message", () => {
    const path = join(work, "junk.img");
    writeFileSync(path, bytes(1 << 20, 9));
    expect(() => readPartitions(openImage(path))).toThrow(/no GPT or MBR partition table/);
  });
});

describe("LVM", () => {
  test("a multi-segment LV read through the PV metadata", () => {
    const pv = join(work, "pv.img");
    sh(["truncate", "-s", "80M", pv]);
    const vg = `h5test${process.pid}`;
    const config = "backup { backup = 0 archive = 0 }";
    const loop = sh(["losetup", "-f", "--show", pv]).trim();
    const lvm = (...args: string[]) => sh([args[0]!, "--config", config, ...args.slice(1)]);
    try {
      lvm("pvcreate", "-q", loop);
      lvm("vgcreate", "-q", vg, loop);
      lvm("lvcreate", "-q", "--driverloaded", "n", "-an", "-Zn", "-L", "16M", "-n", "rootfs", vg);
      lvm("lvcreate", "-q", "--driverloaded", "n", "-an", "-Zn", "-L", "8M", "-n", "other", vg);
      lvm("lvextend", "-q", "--driverloaded", "n", "-L", "32M", `${vg}/rootfs`);
      const peStart = Number.parseInt(lvm("pvs", "--noheadings", "--units", "b", "-o", "pe_start", loop), 10);
      const extent = Number.parseInt(
        lvm("vgs", "--noheadings", "--units", "b", "-o", "vg_extent_size", vg),
        10,
      );
      const segs = lvm(
        "lvs",
        "--noheadings",
        "--segments",
        "-o",
        "seg_start_pe,seg_pe_ranges",
        `${vg}/rootfs`,
      )
        .trim()
        .split("\n")
        .map((l) => l.trim().split(/\s+/));
      const root = ext4Image("lvroot", ["-b", "4096"], { manyFiles: 2 });
      // Write the filesystem image into the LV's extents exactly where LVM says they are.
      for (const [startPe, range] of segs) {
        const [, from, to] = /:(\d+)-(\d+)$/.exec(range!)!.map(Number) as [number, number, number];
        sh([
          "dd",
          `if=${root.path}`,
          `of=${pv}`,
          "bs=1M",
          `skip=${Number(startPe) * extent}`,
          `count=${(to - from + 1) * extent}`,
          `seek=${peStart + from * extent}`,
          "iflag=skip_bytes,count_bytes",
          "oflag=seek_bytes",
          "conv=notrunc",
          "status=none",
        ]);
      }
      expect(segs.length).toBe(2);
      const lvs = readLogicalVolumes(openImage(pv));
      expect(lvs.map((l) => `${l.vg}/${l.name}`).sort()).toEqual([`${vg}/other`, `${vg}/rootfs`]);
      const rootfs = lvs.find((l) => l.name === "rootfs")!;
      expect(rootfs.source.size).toBe(32 * 1024 * 1024);
      expectTree(openTree(rootfs.source, probe(rootfs.source)), root.sample);
    } finally {
      Bun.spawnSync(["vgremove", "--config", config, "-f", vg], { stderr: "ignore", stdout: "ignore" });
      Bun.spawnSync(["losetup", "-d", loop]);
    }
  });
});

/** Host-side disk image helpers for scenarios (no device-mapper needed: offsets, debugfs, loops). */
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { withLock } from "./lock.ts";
import { sh, shText } from "./proc.ts";

export interface Partition {
  number: number;
  /** Byte offset of the partition in the image. */
  offset: number;
  size: number;
  /** GPT partition name (e.g. "boot", "root"). */
  name: string;
  type: string;
}

interface SfdiskJson {
  partitiontable: {
    sectorsize?: number;
    partitions: Array<{ node: string; start: number; size: number; type: string; name?: string }>;
  };
}

export async function partitions(image: string): Promise<Partition[]> {
  const table = JSON.parse(await shText(["sfdisk", "-J", image])) as SfdiskJson;
  const sector = table.partitiontable.sectorsize ?? 512;
  return table.partitiontable.partitions.map((p) => ({
    number: Number(p.node.match(/(\d+)$/)?.[1]),
    offset: p.start * sector,
    size: p.size * sector,
    name: p.name ?? "",
    type: p.type,
  }));
}

export async function partitionByName(image: string, name: string): Promise<Partition | undefined> {
  return (await partitions(image)).find((p) => p.name === name);
}

/** Lists a directory of an ext4 filesystem inside an image (debugfs, read-only, no mount). */
export async function ext4List(image: string, offset: number, dir: string): Promise<string[]> {
  const out = await shText(["debugfs", "-R", `ls -p ${dir}`, `${image}?offset=${offset}`]);
  return out
    .split("\n")
    .map((line) => line.split("/")[5] ?? "")
    .filter((name) => name !== "" && name !== "." && name !== "..");
}

/** Copies one file out of an ext4 filesystem inside an image. */
export async function ext4Dump(image: string, offset: number, path: string, dest: string): Promise<void> {
  rmSync(dest, { force: true });
  await sh(["debugfs", "-R", `dump ${path} ${dest}`, `${image}?offset=${offset}`]);
  if (!(await Bun.file(dest).exists())) throw new Error(`debugfs could not read ${path} from ${image}`);
}

/**
 * Kernel and initrd of the newest kernel on a disk: from the GPT partition "boot" (converted GRUB
 * layout) or else from /boot of the partition "root" (the plain base image).
 */
export async function extractKernel(
  image: string,
  destDir: string,
): Promise<{ kernel: string; initrd: string }> {
  const boot = await partitionByName(image, "boot");
  const root = await partitionByName(image, "root");
  const part = boot ?? root;
  if (!part) throw new Error(`${image} has neither a "boot" nor a "root" partition`);
  const dir = boot ? "/" : "/boot";
  const names = await ext4List(image, part.offset, dir);
  const newest = (prefix: string) =>
    names
      .filter((n) => n.startsWith(prefix))
      .map((n) => n.slice(prefix.length))
      .sort(Bun.semver.order)
      .at(-1);
  const version = newest("vmlinuz-");
  if (!version || !names.includes(`initrd.img-${version}`)) {
    throw new Error(`no vmlinuz-*/initrd.img-* pair in ${dir} of partition ${part.number} of ${image}`);
  }
  mkdirSync(destDir, { recursive: true });
  const kernel = join(destDir, `vmlinuz-${version}`);
  const initrd = join(destDir, `initrd.img-${version}`);
  await ext4Dump(image, part.offset, `${dir}/vmlinuz-${version}`.replace("//", "/"), kernel);
  await ext4Dump(image, part.offset, `${dir}/initrd.img-${version}`.replace("//", "/"), initrd);
  return { kernel, initrd };
}

/**
 * A copy of an initrd with files replaced: the initrd is decompressed and an extra cpio archive
 * with `files` appended (the kernel unpacks concatenated archives in order, later ones win).
 */
export async function initrdWithFiles(
  initrd: string,
  files: Record<string, string>,
  dest: string,
): Promise<void> {
  const magic = readFileSync(initrd).subarray(0, 6);
  let decompress: string[];
  if (magic.readUInt32LE(0) === 0x184c2102) decompress = ["lz4", "-dc", initrd];
  else if (magic.readUInt32LE(0) === 0xfd2fb528) decompress = ["zstd", "-dc", initrd];
  else if (magic[0] === 0x1f && magic[1] === 0x8b) decompress = ["gzip", "-dc", initrd];
  else if (magic.toString() === "070701") decompress = ["cat", initrd];
  else throw new Error(`${initrd}: unknown initrd compression`);
  const stage = mkdtempSync(join(tmpdir(), "cptest-initrd-"));
  try {
    const names: string[] = [];
    for (const [path, content] of Object.entries(files)) {
      const rel = path.replace(/^\/+/, "");
      mkdirSync(dirname(join(stage, rel)), { recursive: true });
      writeFileSync(join(stage, rel), content);
      names.push(rel);
    }
    const base = Bun.spawn(decompress, { stdout: Bun.file(dest) });
    if ((await base.exited) !== 0) throw new Error(`${decompress.join(" ")} failed`);
    const cpio = Bun.spawn(["cpio", "-o", "-H", "newc", "--quiet"], {
      cwd: stage,
      stdin: new Blob([`${names.join("\n")}\n`]),
      stdout: "pipe",
    });
    const archive = await new Response(cpio.stdout).arrayBuffer();
    if ((await cpio.exited) !== 0) throw new Error("cpio failed");
    appendFileSync(dest, new Uint8Array(archive));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** Sparse copy of a disk image. */
export async function copyImage(src: string, dest: string): Promise<void> {
  rmSync(dest, { force: true });
  await sh(["cp", "--sparse=always", src, dest]);
}

/** Enlarges a raw image (the guest sees a bigger disk; growpart moves the GPT backup header). */
export async function growImage(image: string, addMiB: number): Promise<void> {
  await sh(["truncate", "-s", `+${addMiB}M`, image]);
}

/** XORs one byte at `offset` with 0xff. */
export async function flipByte(image: string, offset: number): Promise<void> {
  const fd = await import("node:fs/promises").then((fs) => fs.open(image, "r+"));
  try {
    const buf = Buffer.alloc(1);
    await fd.read(buf, 0, 1, offset);
    buf[0] = buf[0]! ^ 0xff;
    await fd.write(buf, 0, 1, offset);
  } finally {
    await fd.close();
  }
}

/** Reads `length` bytes at `offset`. */
export async function readBytes(image: string, offset: number, length: number): Promise<Buffer> {
  const fs = await import("node:fs/promises");
  const fd = await fs.open(image, "r");
  try {
    const buf = Buffer.alloc(length);
    await fd.read(buf, 0, length, offset);
    return buf;
  } finally {
    await fd.close();
  }
}

/** Writes BYTES at OFFSET (the host editing the guest's disk). */
export async function writeBytes(image: string, offset: number, bytes: Uint8Array): Promise<void> {
  const fs = await import("node:fs/promises");
  const fd = await fs.open(image, "r+");
  try {
    await fd.write(bytes, 0, bytes.length, offset);
  } finally {
    await fd.close();
  }
}

/**
 * Writes files into the ext4 root partition (label/name "root") of a plain image, before
 * conversion, by loop-mounting it at its offset. Modes: 0755 for paths ending in .sh, else 0644.
 */
export async function addFilesToRoot(image: string, files: Record<string, string>): Promise<void> {
  await withRootMounted(image, async (mnt) => {
    for (const [path, content] of Object.entries(files)) {
      const target = join(mnt, path);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, content, { mode: path.endsWith(".sh") ? 0o755 : 0o644 });
    }
  });
}

/** FN with the image's partition "root" mounted read-write (loop) at a temporary directory. */
export async function withRootMounted<T>(image: string, fn: (mnt: string) => Promise<T>): Promise<T> {
  const root = await partitionByName(image, "root");
  if (!root) throw new Error(`${image} has no partition named "root"`);
  const mnt = mkdtempSync(join(tmpdir(), "cptest-root-"));
  await sh(["mount", "-o", `loop,offset=${root.offset},sizelimit=${root.size}`, image, mnt]);
  try {
    return await fn(mnt);
  } finally {
    await sh(["umount", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

/**
 * The Debian package of REPO's build for ARCH, built by `make deb` as a user builds it (the arm64
 * one from the cross-compiled executable); uncompressed, since the scenarios unpack it at once.
 */
export async function makeDeb(ctx: { repo: string }, arch: "amd64" | "arm64"): Promise<string> {
  // One make at a time: scenarios run side by side, and both packages depend on dist/cryptpilot-fde.
  await withLock(
    join(ctx.repo, "vm-test", "out", ".make.lock"),
    () => undefined,
    () =>
      sh(["make", "-C", ctx.repo, "--no-print-directory", "deb", `ARCH=${arch}`], {
        env: { DEB_COMPRESSION: "none" },
      }),
  );
  const { version } = JSON.parse(readFileSync(join(ctx.repo, "package.json"), "utf8")) as { version: string };
  return join(ctx.repo, "dist", `cryptpilot-fde_${version}_${arch}.deb`);
}

/**
 * Installs a .deb into the image's root as an image pipeline does: `dpkg -i` in a chroot with
 * /proc, /sys and /dev bound (the agent, a Bun executable, needs /proc). Returns dpkg's output.
 */
export async function installDebInRoot(image: string, deb: string): Promise<string> {
  return await withRootMounted(image, async (mnt) => {
    // The package's directory is bound in (/mnt), not copied: the root has little free space.
    const binds: string[] = [];
    try {
      for (const [from, to] of [
        ["/proc", "proc"],
        ["/sys", "sys"],
        ["/dev", "dev"],
        [dirname(deb), "mnt"],
      ] as const) {
        await sh(["mount", "--bind", from, join(mnt, to)]);
        binds.push(join(mnt, to));
      }
      return await shText(["chroot", mnt, "dpkg", "-i", `/mnt/${basename(deb)}`]);
    } finally {
      for (const b of binds.reverse()) await sh(["umount", "-l", b]);
    }
  });
}

export interface LogicalVolume {
  name: string;
  /** Byte offset of the LV's first extent in the image (single linear segment). */
  offset: number;
  size: number;
}

/** The rows of `lvs`/`pvs -o FIELDS` (JSON, sizes in bytes) for the loop device LOOP only, read-only. */
async function lvmReport<Row>(
  loop: string,
  command: "lvs" | "pvs",
  fields: string,
  ...args: string[]
): Promise<Row[]> {
  const config = `devices { filter = [ "a|^${loop}$|", "r|.*|" ] use_devicesfile = 0 }`;
  const json = await shText([
    command,
    "--config",
    config,
    "--readonly",
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    fields,
    ...args,
  ]);
  const report = JSON.parse(json) as { report: Array<Record<string, Row[]>> };
  return report.report[0]?.[command === "lvs" ? "lv" : "pv"] ?? [];
}

/**
 * Where the LVs of VG "cryptpilot" sit in the image, read with the host's LVM tools from a
 * read-only loop device of the PV partition (reading metadata needs no device-mapper).
 */
export async function logicalVolumes(image: string): Promise<LogicalVolume[]> {
  const parts = await partitions(image);
  const pv =
    parts.find((p) => p.type.toUpperCase() === "E6D6D379-F507-44C2-A23C-238F2A3DF928") ?? parts.at(-1);
  if (!pv) throw new Error(`${image}: no partitions`);
  return withReadOnlyLoop(image, pv.offset, pv.size, async (loop) => {
    const [pvInfo] = await lvmReport<{ pe_start: string }>(loop, "pvs", "pe_start");
    const peStart = Number(pvInfo?.pe_start);
    const lvs = await lvmReport<{
      lv_name: string;
      seg_pe_ranges: string;
      vg_extent_size: string;
      seg_size: string;
    }>(loop, "lvs", "lv_name,seg_pe_ranges,vg_extent_size,seg_size", "cryptpilot");
    return lvs.map((lv) => {
      const first = Number(lv.seg_pe_ranges.match(/:(\d+)-/)?.[1]);
      return {
        name: lv.lv_name,
        offset: pv.offset + peStart + first * Number(lv.vg_extent_size),
        size: Number(lv.seg_size),
      };
    });
  });
}

/** `fn` on a read-only loop device over `size` bytes of IMAGE from `offset`; detached afterwards. */
export async function withReadOnlyLoop<T>(
  image: string,
  offset: number,
  size: number,
  fn: (loop: string) => Promise<T>,
): Promise<T> {
  const args = ["--find", "--show", "--read-only", "-o", String(offset), "--sizelimit", String(size)];
  const loop = (await shText(["losetup", ...args, image])).trim();
  try {
    return await fn(loop);
  } finally {
    await sh(["losetup", "-d", loop]);
  }
}

/** `fn` on a read-only loop device of LV `name` (VG cryptpilot) in IMAGE; undefined without that LV. */
export async function withLvLoop<T>(
  image: string,
  name: string,
  fn: (loop: string) => Promise<T>,
): Promise<T | undefined> {
  const lv = (await logicalVolumes(image)).find((v) => v.name === name);
  return lv && withReadOnlyLoop(image, lv.offset, lv.size, fn);
}

/**
 * Enlarges the partition "root" of a plain image by ADD_MIB and its ext4 filesystem with it (offline:
 * e2fsck, then resize2fs on a loop device at the partition's offset; no device-mapper). The root
 * partition must be the image's last one; the image file grows first when the space after it is
 * short. The base image's root just fits its content, as a cloud image's does until growpart runs at
 * its first boot: a scenario that copies packages in and installs them in the guest needs room.
 */
export async function growRootPartition(image: string, addMiB: number): Promise<void> {
  const parts = await partitions(image);
  const root = parts.find((p) => p.name === "root");
  if (!root) throw new Error(`${image} has no partition named "root"`);
  if (parts.some((p) => p.offset > root.offset))
    throw new Error(`${image}: the root partition is not the last one; it cannot grow in place`);
  const sector = 512;
  const newSize = root.size + addMiB * 2 ** 20;
  // The GPT backup header and its partition array (33 sectors) stay behind the partition.
  const needed = root.offset + newSize + 33 * sector;
  if (Bun.file(image).size < needed) {
    await sh(["truncate", "-s", String(needed), image]);
    await sh(["sfdisk", "--quiet", "--relocate", "gpt-bak-std", image]);
  }
  // sfdisk -N reads the partition's new "start, size" (sectors) from stdin.
  const sfdisk = Bun.spawn(
    ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "-N", String(root.number), image],
    { stdin: new Blob([`${root.offset / sector}, ${newSize / sector}\n`]), stdout: "pipe", stderr: "pipe" },
  );
  const [sfdiskErr, sfdiskCode] = await Promise.all([new Response(sfdisk.stderr).text(), sfdisk.exited]);
  if (sfdiskCode !== 0)
    throw new Error(`sfdisk could not grow partition ${root.number} of ${image}: ${sfdiskErr}`);
  await withLoop(image, root.offset, newSize, async (loop) => {
    await sh(["e2fsck", "-f", "-p", loop]);
    await sh(["resize2fs", "-p", loop]);
  });
}

/** `fn` on a read-write loop device over `size` bytes of IMAGE from `offset`; detached afterwards. */
async function withLoop<T>(
  image: string,
  offset: number,
  size: number,
  fn: (loop: string) => Promise<T>,
): Promise<T> {
  const loop = (
    await shText(["losetup", "--find", "--show", "-o", String(offset), "--sizelimit", String(size), image])
  ).trim();
  try {
    return await fn(loop);
  } finally {
    await sh(["losetup", "-d", loop]);
  }
}

/**
 * Copies host files (binary or large: a .deb) into the root filesystem of a plain image, mode 0644:
 * `files` maps the path in the guest to the path on the host. (addFilesToRoot writes text.)
 */
export async function copyFilesToRoot(image: string, files: Record<string, string>): Promise<void> {
  await withRootMounted(image, async (mnt) => {
    for (const [path, hostPath] of Object.entries(files)) {
      const target = join(mnt, path);
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(hostPath, target);
      chmodSync(target, 0o644);
    }
  });
}

/**
 * `cryptpilot-fde convert`: a plain Linux disk image -> the cryptpilot FDE layout. Works on hosts
 * without device-mapper: the rootfs is shrunk, verity-formatted and (optionally) LUKS2-encrypted
 * as files, LVM metadata is written without activation, and LV data lands at computed offsets.
 * The output is assembled as DST.partial and renamed only when everything succeeded.
 */
import { existsSync } from "node:fs";
import {
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { runSteps, type Step } from "../steps.ts";
import { run, runText } from "../command.ts";
import { volumeFiles } from "../config/volume.ts";
import * as luks from "../disk/luks.ts";
import * as verity from "../disk/verity.ts";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import type { NewSealedKey } from "../tpm/enroll.ts";
import type { SealPolicy } from "../tpm/seal.ts";
import { rewriteBlsEntry, rewriteCmdline, rewriteGrubCfg, rewriteGrubenv } from "./bootcfg.ts";
import { Cleanup } from "./cleanup.ts";
import {
  type Assets,
  findKernels,
  fixFstab,
  installAgent,
  type Kernel,
  mount,
  moveBootOut,
  requireRoot,
  runDracut,
} from "./guest.ts";
import { alignUp, computeLayout, type Layout, MiB, pvMinSize, type Region, sfdiskScript } from "./layout.ts";
import { copyAt, writePv } from "./pv.ts";
import {
  chooseRoot,
  findEsp,
  type Partition,
  type PartitionTable,
  readPartitions,
  requireShrinkableRoot,
} from "./source.ts";

/** LUKS2 header room taken from the end of the rootfs image by offline encryption. */
export const LUKS_REDUCE = 32 * MiB;
/** Slack after the rootfs image in its LV (as upstream). */
const ROOTFS_LV_SLACK = 16 * MiB;
const DEFAULT_STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

export interface ConvertOptions {
  /** Source image (raw/qcow2) or block device. */
  input: string;
  /** Output image; equal to input in --device mode. */
  output: string;
  device: boolean;
  configDir: string;
  /** Undefined: rootfs not encrypted (still verity-protected). */
  rootfsKey?: Uint8Array;
  rootPartNum?: number;
  bootPartSize: number;
  uki: boolean;
  ukiAppendCmdline: string;
  assets: Assets;
  /**
   * --device mode: also zero the PV's unallocated space (the old root's freed blocks, the delta's
   * space from the first boot on). Without it those bytes are left as they were, as upstream does.
   * --in/--out ignores it: the output is a new file with nothing old in it.
   */
  wipeFreedSpace?: boolean;
  /**
   * --tpm2-enroll: seal a new random rootfs key to this TPM under this policy (the TPM's current
   * PCR values) and add it as a keyslot with a cryptpilot-tpm2 token; rootfsKey stays as recovery.
   */
  tpm2Enroll?: { tcti: string; policy: SealPolicy };
}

interface Ctx {
  provider?: string;
  opts: ConvertOptions;
  cleanup: Cleanup;
  work: string;
  srcRaw: string;
  table?: PartitionTable;
  root?: Partition;
  esp?: Partition;
  rootfsImg: string;
  hashImg: string;
  cfgDir: string;
  bootStaging: string;
  guestMount: string;
  bootUuid: string;
  rootHash?: string;
  /** The source's separate /boot partition, if it had one (its GRUB searches move to the new one). */
  oldBoot?: Partition;
  kernels: Kernel[];
  ukiFile?: string;
  rootfsLvFile?: string;
  rootfsLvSize?: number;
  layout?: Layout;
  /** The PV's unallocated extents in the output. */
  pvFree?: Region;
  /** --tpm2-enroll: the new rootfs key and its sealed copy (sealed first, to fail early). */
  tpm2Key?: NewSealedKey;
  partial: string;
}

/** The UKI's command line: the guest's /etc/kernel/cmdline (kernel-install's file), then --uki-append-cmdline. */
export const ukiCmdline = (guestCmdline: string, append: string) =>
  rewriteCmdline(`ro ${guestCmdline.replace(/\s+/g, " ")} ${append}`);

function steps(o: ConvertOptions): Step<Ctx>[] {
  const list: Step<Ctx>[] = [];
  if (o.tpm2Enroll) {
    list.push({
      title: "sealing a new rootfs key to the TPM",
      device: () => o.tpm2Enroll!.tcti,
      run: sealTpm2Key,
    });
  }
  list.push(
    { title: "reading the source disk", device: (c) => c.opts.input, run: readSource },
    { title: "extracting the root filesystem", device: (c) => c.opts.input, run: extractRoot },
    {
      title: "installing the agent and dracut module into the guest",
      device: (c) => c.rootfsImg,
      run: prepareGuest,
    },
    { title: "shrinking the root filesystem", device: (c) => c.rootfsImg, run: shrinkRoot },
    { title: "computing the dm-verity hash tree", device: (c) => c.rootfsImg, run: formatVerity },
    {
      title: "rebuilding the guest's initrd with the agent",
      device: (c) => c.rootfsImg,
      run: rebuildInitrds,
    },
  );
  if (!o.uki) list.push({ title: "pointing every boot entry at /dev/mapper/rootfs", run: rewriteEntries });
  if (o.rootfsKey)
    list.push({
      title: "encrypting the root filesystem (LUKS2, offline)",
      device: (c) => c.rootfsImg,
      run: encryptRoot,
    });
  else list.push({ title: "sizing the unencrypted rootfs volume", run: plainRoot });
  if (o.rootfsKey && o.tpm2Enroll) {
    list.push({
      title: "adding the TPM-sealed key to the rootfs LUKS2 header (keyslot and token)",
      device: (c) => c.rootfsLvFile!,
      run: enrollTpm2Key,
    });
  }
  list.push({
    title: "writing the partitions, ESP and boot files",
    device: (c) => c.partial,
    run: writeDisk,
  });
  list.push({ title: "writing the cryptpilot LVM volume group", device: (c) => c.partial, run: writeLvm });
  list.push({
    title: o.device ? `writing the result to ${o.output}` : `finishing ${o.output}`,
    device: (c) => c.opts.output,
    run: finish,
  });
  return list;
}

export async function convert(opts: ConvertOptions): Promise<void> {
  requireRoot();
  const cleanup = new Cleanup();
  const work = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), "cryptpilot-convert-"));
  cleanup.push("work dir", () => rm(work, { recursive: true, force: true }));
  const partial = opts.device ? join(work, "out.raw") : `${opts.output}.partial`;
  if (!opts.device) cleanup.push("partial output", () => rm(partial, { force: true }));
  const ctx: Ctx = {
    opts,
    cleanup,
    work,
    srcRaw: join(work, "src.raw"),
    rootfsImg: join(work, "rootfs.img"),
    hashImg: join(work, "rootfs_hash.img"),
    cfgDir: join(work, "etc-cryptpilot"),
    bootStaging: join(work, "boot"),
    guestMount: join(work, "guest"),
    bootUuid: crypto.randomUUID(),
    kernels: [],
    partial,
  };
  const onSignal = () => {
    void cleanup.runAll().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await runSteps("convert", steps(opts), ctx);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup.runAll();
  }
}

async function readSource(c: Ctx): Promise<void> {
  await run("qemu-img", [
    "convert",
    "-O",
    "raw",
    ...(c.opts.device ? ["-f", "raw"] : []),
    c.opts.input,
    c.srcRaw,
  ]);
  c.table = await readPartitions(c.srcRaw);
  c.root = chooseRoot(c.table, c.opts.rootPartNum);
  c.esp = findEsp(c.table);
  requireShrinkableRoot(c.root);
  if (!c.esp && !c.opts.uki) {
    throw new FdeError(
      "the source disk has no EFI system partition; GRUB mode keeps the source's shim and GRUB",
      {
        hint: "use --uki to boot a unified kernel image from a new ESP instead",
      },
    );
  }
  log.info(
    `  root filesystem: partition ${c.root.number} (${c.root.label ? `label ${c.root.label}, ` : ""}${(c.root.size / MiB).toFixed(0)} MiB)` +
      (c.esp ? `; ESP: partition ${c.esp.number}` : ""),
  );
}

async function extractRoot(c: Ctx): Promise<void> {
  const root = c.root!;
  await run("dd", [
    `if=${c.srcRaw}`,
    `of=${c.rootfsImg}`,
    "bs=4M",
    `skip=${root.offset}`,
    `count=${root.size}`,
    "iflag=skip_bytes,count_bytes",
    "conv=sparse",
    "status=none",
  ]);
  // A clean filesystem before the guest is modified (the image may come from a running VM).
  await run("e2fsck", ["-f", "-y", c.rootfsImg], { okCodes: [0, 1] });
}

/** A source /boot partition (ext4 with kernels at its top level), when /boot is not in the root fs. */
async function copySourceBootPartition(c: Ctx): Promise<void> {
  for (const p of c.table!.partitions) {
    if (p === c.root || p.fsType !== "ext4") continue;
    const dir = join(c.work, `srcboot${p.number}`);
    await mount(
      c.cleanup,
      c.srcRaw,
      dir,
      ["-o", `ro,loop,offset=${p.offset},sizelimit=${p.size}`],
      "srcboot",
    );
    const files = await readdir(dir);
    if (files.some((f) => f.startsWith("vmlinuz-"))) {
      c.oldBoot = p;
      for (const f of files) {
        if (f === "lost+found" || f === "boot") continue;
        await run("cp", ["-a", join(dir, f), c.bootStaging]);
      }
    }
    await c.cleanup.runOne("umount srcboot");
  }
}

async function prepareGuest(c: Ctx): Promise<void> {
  await mount(c.cleanup, c.rootfsImg, c.guestMount, ["-o", "loop"], "guest");
  await installAgent(c.guestMount, c.opts.assets);
  await fixFstab(c.guestMount);
  await moveBootOut(c.guestMount, c.bootStaging);
  await mkdir(c.cfgDir, { recursive: true });
  for (const name of ["fde.toml", "global.toml"]) {
    const src = join(c.opts.configDir, name);
    if (!existsSync(src)) continue;
    await copyFile(src, join(c.cfgDir, name));
    await copyFile(src, join(c.guestMount, "etc/cryptpilot", name));
  }
  // Data volumes (checked by checkConfig): the booted system opens them, and the dracut module
  // puts the open_in_initrd ones into the initrd.
  const volumes = await volumeFiles(c.opts.configDir);
  if (volumes.length > 0) {
    const targets = [join(c.cfgDir, "volumes"), join(c.guestMount, "etc/cryptpilot/volumes")];
    for (const dir of targets) await mkdir(dir, { recursive: true });
    for (const src of volumes) for (const dir of targets) await copyFile(src, join(dir, basename(src)));
    log.info(`  ${volumes.length} data volume file(s) copied`);
  }
  await c.cleanup.runOne("umount guest");
  if (!(await readdir(c.bootStaging)).some((f) => f.startsWith("vmlinuz-"))) await copySourceBootPartition(c);
}

async function shrinkRoot(c: Ctx): Promise<void> {
  await run("tune2fs", ["-O", "read-only", c.rootfsImg]);
  await run("e2fsck", ["-f", "-y", c.rootfsImg], { okCodes: [0, 1] });
  await run("resize2fs", ["-M", c.rootfsImg]);
  const info = await runText("dumpe2fs", ["-h", c.rootfsImg]);
  const num = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, "m").exec(info)?.[1]);
  const bytes = alignUp(num("Block count") * num("Block size"), 4096);
  if (!Number.isFinite(bytes) || bytes <= 0)
    throw new FdeError("cannot read the shrunk filesystem size from dumpe2fs");
  await truncate(c.rootfsImg, bytes);
  log.info(`  root filesystem is now ${(bytes / MiB).toFixed(0)} MiB`);
}

async function formatVerity(c: Ctx): Promise<void> {
  const result = await verity.format(c.rootfsImg, c.hashImg);
  c.rootHash = result.rootHash;
  await writeFile(join(c.cfgDir, "metadata.toml"), `type = 1\nroot_hash = "${result.rootHash}"\n`);
  log.info(`  root hash ${result.rootHash}`);
}

/** Highest kernel version first (dpkg-like ordering is overkill here: numeric-aware compare). */
const byVersionDesc = (a: Kernel, b: Kernel) =>
  b.version.localeCompare(a.version, undefined, { numeric: true });

async function rebuildInitrds(c: Ctx): Promise<void> {
  await mount(c.cleanup, c.rootfsImg, c.guestMount, ["-o", "loop,ro,noload"], "guest");
  const { kernels, skipped } = await findKernels(c.guestMount, c.bootStaging);
  for (const v of skipped)
    log.warn(
      `kernel ${v} has no modules in the guest; its entries cannot boot (root=/dev/mapper/rootfs needs the agent)`,
    );
  if (kernels.length === 0)
    throw new FdeError("no kernel in the guest's /boot has its modules installed; nothing can boot");
  c.kernels = kernels;
  if (c.opts.uki) {
    const kernel = [...kernels].sort(byVersionDesc)[0]!;
    const guestStub = join(c.guestMount, DEFAULT_STUB.slice(1));
    const outDir = join(c.work, "uki");
    await mkdir(outDir, { recursive: true });
    const stubDir = join(c.work, "stub");
    await mkdir(stubDir, { recursive: true });
    let stub = DEFAULT_STUB;
    if (!existsSync(guestStub)) {
      if (!existsSync(DEFAULT_STUB))
        throw new FdeError(
          `--uki needs the systemd EFI stub ${DEFAULT_STUB} (package systemd-boot-efi) in the guest or on this host`,
        );
      await copyFile(DEFAULT_STUB, join(stubDir, "linuxx64.efi.stub"));
      stub = "/run/cryptpilot-stub/linuxx64.efi.stub";
    }
    await runDracut(
      c.cleanup,
      c.guestMount,
      { boot: c.bootStaging, config: c.cfgDir, extra: { host: stubDir, guest: "run/cryptpilot-stub" } },
      [
        {
          kernel,
          output: "/run/cryptpilot-stub/uki.efi",
          uki: { stub, cmdline: ukiCmdline(await guestKernelCmdline(c.guestMount), c.opts.ukiAppendCmdline) },
        },
      ],
    );
    c.ukiFile = join(outDir, "BOOTX64.EFI");
    await copyFile(join(stubDir, "uki.efi"), c.ukiFile);
    log.info(`  UKI for kernel ${kernel.version}`);
  } else {
    await runDracut(
      c.cleanup,
      c.guestMount,
      { boot: c.bootStaging, config: c.cfgDir },
      kernels.map((kernel) => ({ kernel, output: `/boot/${kernel.initrd}` })),
    );
    log.info(`  initrds rebuilt for ${kernels.map((k) => k.version).join(", ")}`);
  }
  await c.cleanup.runOne("umount guest");
}

async function guestKernelCmdline(root: string): Promise<string> {
  const path = join(root, "etc/kernel/cmdline");
  return existsSync(path) ? (await readFile(path, "utf8")).trim() : "";
}

async function rewriteEntries(c: Ctx): Promise<void> {
  const s = c.bootStaging;
  for (const rel of ["grub/grub.cfg", "grub2/grub.cfg"]) {
    const p = join(s, rel);
    if (existsSync(p)) await writeFile(p, retargetGrubCfg(c, await readFile(p, "utf8")));
  }
  for (const rel of ["grub/grubenv", "grub2/grubenv", "grubenv"]) {
    const p = join(s, rel);
    if (existsSync(p)) await writeFile(p, rewriteGrubenv(await readFile(p, "utf8")));
  }
  const bls = join(s, "loader/entries");
  if (existsSync(bls)) {
    for (const f of await readdir(bls)) {
      if (f.endsWith(".conf"))
        await writeFile(join(bls, f), rewriteBlsEntry(await readFile(join(bls, f), "utf8")));
    }
  }
  // "/boot/..." paths in the entries resolve on the boot partition through this link.
  if (!existsSync(join(s, "boot"))) await symlink(".", join(s, "boot"));
}

/** grub.cfg searches that found the old root or old /boot now find the new boot partition. */
function retargetGrubCfg(c: Ctx, text: string): string {
  const newBoot = { uuid: c.bootUuid, label: "boot" };
  const once = rewriteGrubCfg(text, c.root!, newBoot);
  return c.oldBoot ? rewriteGrubCfg(once, c.oldBoot, newBoot) : once;
}

async function encryptRoot(c: Ctx): Promise<void> {
  const enc = join(c.work, "rootfs.luks");
  await run("cp", ["--sparse=always", c.rootfsImg, enc]);
  await truncate(enc, Bun.file(c.rootfsImg).size + LUKS_REDUCE);
  await luks.encryptOffline(enc, c.opts.rootfsKey!, LUKS_REDUCE);
  c.rootfsLvFile = enc;
  c.rootfsLvSize = Bun.file(enc).size;
}

async function sealTpm2Key(c: Ctx): Promise<void> {
  const { tcti, policy } = c.opts.tpm2Enroll!;
  const { sealNewKey } = await import("../tpm/enroll.ts");
  const fresh = await sealNewKey(tcti, policy);
  c.tpm2Key = fresh;
  c.cleanup.push("TPM-sealed key", async () => fresh.key.fill(0));
  log.info(
    `  sealed to ${tcti} under PCRs ${policy.bank}:${fresh.sealed.pcrs.join(",")}${policy.pin === undefined ? "" : " and a PIN"} at their current values: the converted disk unlocks only while they are the same at its boot`,
  );
}

async function enrollTpm2Key(c: Ctx): Promise<void> {
  const { addSealedKeyslot } = await import("../tpm/enroll.ts");
  const { keyslot, token } = await addSealedKeyslot(c.rootfsLvFile!, c.opts.rootfsKey!, c.tpm2Key!);
  log.info(`  keyslot ${keyslot} (token ${token}); the given rootfs key stays in its keyslot for recovery`);
}

async function plainRoot(c: Ctx): Promise<void> {
  c.rootfsLvFile = c.rootfsImg;
  c.rootfsLvSize = Bun.file(c.rootfsImg).size + ROOTFS_LV_SLACK;
}

async function mtools(cmd: string, args: string[], image: string, offset: number, stdin?: string) {
  return run(cmd, ["-i", `${image}@@${offset}`, ...args], { env: { MTOOLS_SKIP_CHECK: "1" }, stdin });
}

/** ESP for UKI mode: a fresh FAT holding only EFI/BOOT/BOOTX64.EFI, so nothing else on it can boot. */
async function buildUkiEsp(c: Ctx, size: number): Promise<string> {
  const img = join(c.work, "esp.img");
  await run("mkfs.vfat", ["-F", "32", "-n", "ESP", "-C", img, String(size / 1024)]);
  await mtools("mmd", ["::/EFI", "::/EFI/BOOT"], img, 0);
  await mtools("mcopy", [c.ukiFile!, "::/EFI/BOOT/BOOTX64.EFI"], img, 0);
  return img;
}

async function patchEspGrubCfgs(c: Ctx, image: string, offset: number): Promise<void> {
  const { stdout } = await run("mdir", ["-i", `${image}@@${offset}`, "-/", "-b", "::/EFI"], {
    env: { MTOOLS_SKIP_CHECK: "1" },
    okCodes: [0, 1],
  });
  const files = new TextDecoder()
    .decode(stdout)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /grub\.cfg$/i.test(l));
  for (const file of files) {
    const text = new TextDecoder().decode((await mtools("mtype", [file], image, offset)).stdout);
    const local = join(c.work, "esp-grub.cfg");
    await writeFile(local, retargetGrubCfg(c, text));
    await mtools("mcopy", ["-o", local, file], image, offset);
  }
}

async function writeDisk(c: Ctx): Promise<void> {
  const hashSize = Bun.file(c.hashImg).size;
  const ukiSize = c.ukiFile ? Bun.file(c.ukiFile).size : 0;
  const espSize = c.opts.uki
    ? Math.max(c.esp?.size ?? 0, alignUp(ukiSize * 1.25 + 32 * MiB, MiB))
    : c.esp!.size;
  c.layout = computeLayout({
    sourceDiskSize: Bun.file(c.srcRaw).size,
    espSize,
    bootSize: c.opts.uki ? undefined : c.opts.bootPartSize,
    pvMin: pvMinSize(c.rootfsLvSize!, hashSize),
  });
  const L = c.layout;
  if (c.opts.device && L.diskSize > Bun.file(c.srcRaw).size) {
    throw new FdeError(
      `${c.opts.output} is too small for the converted layout (${(L.diskSize / MiB).toFixed(0)} MiB needed)`,
    );
  }
  await rm(c.partial, { force: true });
  await writeFile(c.partial, "");
  await truncate(c.partial, L.diskSize);
  await run("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", c.partial], { stdin: sfdiskScript(L) });
  if (c.opts.uki) {
    await copyAt(await buildUkiEsp(c, L.esp.size), c.partial, L.esp.offset, L.esp.size, true);
  } else {
    await run("dd", [
      `if=${c.srcRaw}`,
      `of=${c.partial}`,
      "bs=4M",
      `skip=${c.esp!.offset}`,
      `seek=${L.esp.offset}`,
      `count=${c.esp!.size}`,
      "iflag=skip_bytes,count_bytes",
      "oflag=seek_bytes",
      "conv=notrunc,sparse",
      "status=none",
    ]);
    await patchEspGrubCfgs(c, c.partial, L.esp.offset);
    const bootImg = join(c.work, "boot.img");
    await run(
      "mkfs.ext4",
      [
        "-q",
        "-F",
        "-b",
        "4096",
        "-L",
        "boot",
        "-U",
        c.bootUuid,
        "-d",
        c.bootStaging,
        bootImg,
        `${L.boot!.size / 1024}k`,
      ],
      {
        hint: "the boot partition is too small for the kernels and initrds: raise -b/--boot_part_size",
      },
    );
    await copyAt(bootImg, c.partial, L.boot!.offset, L.boot!.size, true);
  }
}

async function writeLvm(c: Ctx): Promise<void> {
  const { free } = await writePv(c.cleanup, c.work, c.partial, c.layout!.pv, [
    { name: "rootfs", file: c.rootfsLvFile!, size: c.rootfsLvSize! },
    { name: "rootfs_hash", file: c.hashImg, size: Bun.file(c.hashImg).size },
  ]);
  c.pvFree = free;
}

/** Copy [offset, offset + length) of the assembled image onto the device, every byte (zeros too). */
async function writeRange(c: Ctx, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  await run("dd", [
    `if=${c.partial}`,
    `of=${c.opts.output}`,
    "bs=4M",
    `skip=${offset}`,
    `seek=${offset}`,
    `count=${length}`,
    "iflag=skip_bytes,count_bytes",
    "oflag=seek_bytes",
    "conv=notrunc,fsync",
    "status=none",
  ]);
}

async function finish(c: Ctx): Promise<void> {
  const o = c.opts;
  if (o.device) {
    // Not sparse: every byte of the partitions, GPT and LVs must be the new image's (zeros too).
    const size = Bun.file(c.partial).size;
    const free = c.pvFree!;
    const mib = (n: number) => `${(n / MiB).toFixed(0)} MiB`;
    if (o.wipeFreedSpace || free.size === 0) {
      await writeRange(c, 0, size);
      if (free.size > 0) log.info(`  zeroed the ${mib(free.size)} of freed space (--wipe-freed-space)`);
      return;
    }
    await writeRange(c, 0, free.offset);
    await writeRange(c, free.offset + free.size, size - free.offset - free.size);
    log.warn(
      `the freed space (${mib(free.size)} at ${o.output} offset ${free.offset}, the future delta) keeps its old contents, which may include plaintext of the old root filesystem, until the delta overwrites it; --wipe-freed-space zeroes it`,
    );
    return;
  }
  if (o.output.endsWith(".qcow2")) {
    const q = `${c.partial}.qcow2`;
    c.cleanup.push("partial qcow2", () => rm(q, { force: true }));
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", c.partial, q]);
    await rename(q, o.output);
  } else {
    await rename(c.partial, o.output);
  }
  log.info(`  wrote ${o.output}${c.rootHash ? ` (root hash ${c.rootHash})` : ""}`);
}

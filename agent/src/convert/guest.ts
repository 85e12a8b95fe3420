/** Work inside the guest's root filesystem: install the agent, move /boot out, rebuild initrds in a chroot. */
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../command.ts";
import { FdeError } from "../errors.ts";
import { rewriteFstab } from "./bootcfg.ts";
import type { Cleanup } from "./cleanup.ts";

export const MODULE_DIR = "usr/lib/dracut/modules.d/91cryptpilot";
export const AGENT_PATH = "usr/bin/cryptpilot-fde";

/** Files convert installs into the guest: the dracut module and the hooks it installs from $moddir. */
export interface Assets {
  /** file name -> content, all placed in /usr/lib/dracut/modules.d/91cryptpilot/. */
  moduleFiles: Record<string, string>;
  /** Path of the agent executable to copy to /usr/bin/cryptpilot-fde. */
  agentBinary: string;
}

export async function mount(
  cleanup: Cleanup,
  source: string,
  dir: string,
  options: string[],
  label = dir,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await run("mount", [...options, source, dir]);
  cleanup.push(`umount ${label}`, () => run("umount", [dir]));
}

/** Install agent, module and hooks; create /etc/cryptpilot (the dracut chroot binds the config there). */
export async function installAgent(root: string, assets: Assets): Promise<void> {
  const moduleDir = join(root, MODULE_DIR);
  await rm(moduleDir, { recursive: true, force: true });
  await mkdir(moduleDir, { recursive: true });
  for (const [name, content] of Object.entries(assets.moduleFiles)) {
    const path = join(moduleDir, name);
    await writeFile(path, content);
    await chmod(path, name.endsWith(".sh") ? 0o755 : 0o644);
  }
  // The udev rule also acts in the booted system: LABEL=/UUID= of the rootfs resolve only to /dev/mapper/rootfs.
  for (const [name, content] of Object.entries(assets.moduleFiles)) {
    if (!name.endsWith(".rules")) continue;
    await mkdir(join(root, "usr/lib/udev/rules.d"), { recursive: true });
    await writeFile(join(root, "usr/lib/udev/rules.d", name), content);
  }
  await cp(assets.agentBinary, join(root, AGENT_PATH));
  await chmod(join(root, AGENT_PATH), 0o755);
  await mkdir(join(root, "etc/cryptpilot"), { recursive: true });
  await installVolumesUnit(root, assets);
}

/**
 * Data volumes (docs/volumes.md): the booted system's unit that opens auto_open volumes, enabled.
 * It does nothing until /etc/cryptpilot/volumes holds a volume file.
 */
async function installVolumesUnit(root: string, assets: Assets): Promise<void> {
  const unit = assets.moduleFiles["cryptpilot-volumes.service"];
  if (unit === undefined) return;
  await mkdir(join(root, "usr/lib/systemd/system"), { recursive: true });
  await writeFile(join(root, "usr/lib/systemd/system/cryptpilot-volumes.service"), unit);
  await enableVolumesUnit(root);
}

/** Enables /usr/lib/systemd/system/cryptpilot-volumes.service (convert's copy or the guest package's). */
export async function enableVolumesUnit(root: string): Promise<void> {
  const wants = join(root, "etc/systemd/system/multi-user.target.wants");
  await mkdir(wants, { recursive: true });
  await rm(join(wants, "cryptpilot-volumes.service"), { force: true });
  await symlink(
    "/usr/lib/systemd/system/cryptpilot-volumes.service",
    join(wants, "cryptpilot-volumes.service"),
  );
}

/** Root entry of /etc/fstab -> /dev/mapper/rootfs (see rewriteFstab). */
export async function fixFstab(root: string): Promise<void> {
  const path = join(root, "etc/fstab");
  const text = existsSync(path) ? await readFile(path, "utf8") : "";
  await writeFile(path, rewriteFstab(text));
}

/**
 * Move the contents of the guest's /boot (except the ESP mount point) to STAGING: they go to the
 * boot partition (GRUB mode) and are where dracut finds the kernels.
 */
export async function moveBootOut(root: string, staging: string): Promise<void> {
  const boot = join(root, "boot");
  await mkdir(staging, { recursive: true });
  for (const entry of await readdir(boot)) {
    if (entry === "efi") continue;
    await cp(join(boot, entry), join(staging, entry), {
      recursive: true,
      verbatimSymlinks: true,
      preserveTimestamps: true,
    });
    await rm(join(boot, entry), { recursive: true, force: true });
  }
}

export interface Kernel {
  version: string;
  /** File name in /boot, e.g. vmlinuz-6.1.0-28-amd64. */
  image: string;
  /** Initrd file name the boot entries use for this kernel. */
  initrd: string;
}

/** Pure: pick the kernels in /boot and the initrd name each one's boot entry loads. */
export function listKernels(
  bootFiles: string[],
  hasModules: (version: string) => boolean,
): { kernels: Kernel[]; skipped: string[] } {
  const kernels: Kernel[] = [];
  const skipped: string[] = [];
  for (const file of bootFiles.sort()) {
    const m = /^vmlinuz-(.+)$/.exec(file);
    if (!m) continue;
    const version = m[1]!;
    if (!hasModules(version)) {
      skipped.push(version);
      continue;
    }
    // Red Hat style when that is what /boot already uses, Debian style otherwise.
    const rh = `initramfs-${version}.img`;
    kernels.push({ version, image: file, initrd: bootFiles.includes(rh) ? rh : `initrd.img-${version}` });
  }
  return { kernels, skipped };
}

export async function findKernels(
  root: string,
  staging: string,
): Promise<{ kernels: Kernel[]; skipped: string[] }> {
  const files = await readdir(staging);
  return listKernels(
    files,
    (v) => existsSync(join(root, "lib/modules", v)) || existsSync(join(root, "usr/lib/modules", v)),
  );
}

export interface DracutJob {
  kernel: Kernel;
  /** Path inside the chroot for the output. */
  output: string;
  uki?: { stub: string; cmdline: string };
}

/** The dracut argv for one kernel (run inside the guest chroot). */
export function dracutArgs(job: DracutJob): string[] {
  const args = [
    "--force",
    "--no-hostonly",
    "--no-hostonly-cmdline",
    "--add",
    "cryptpilot",
    "--nostrip",
    "--omit",
    " iscsi nvmf multipath ",
    "--include",
    "/etc/cryptpilot",
    "/etc/cryptpilot",
    "--kver",
    job.kernel.version,
  ];
  if (job.uki) {
    args.push("--uefi", "--uefi-stub", job.uki.stub, "--kernel-image", `/boot/${job.kernel.image}`);
    args.push("--kernel-cmdline", job.uki.cmdline);
  }
  args.push(job.output);
  return args;
}

/**
 * Chroot into the (read-only) guest root with /proc, /sys, /dev bound, tmpfs on the scratch
 * directories, the staging /boot and the config bound in, and run dracut once per job.
 */
export async function runDracut(
  cleanup: Cleanup,
  root: string,
  binds: { boot: string; config: string; extra?: { host: string; guest: string } },
  jobs: DracutJob[],
): Promise<void> {
  const tag = "chroot";
  const bind = async (src: string, dst: string, opts: string[]) => {
    await run("mount", [...opts, src, join(root, dst)]);
  };
  cleanup.push(tag, () => unmountBelow(root));
  await bind("/proc", "proc", ["--bind"]);
  // rslave: the recursive binds must not propagate back to the host's /sys and /dev.
  await bind("/sys", "sys", ["--rbind", "--make-rslave"]);
  await bind("/dev", "dev", ["--rbind", "--make-rslave"]);
  for (const dir of ["tmp", "var/tmp", "run"]) await bind("tmpfs", dir, ["-t", "tmpfs"]);
  await bind(binds.boot, "boot", ["--bind"]);
  await bind(binds.config, "etc/cryptpilot", ["--bind"]);
  if (binds.extra) {
    await mkdir(join(root, binds.extra.guest), { recursive: true });
    await bind(binds.extra.host, binds.extra.guest, ["--bind"]);
  }
  for (const job of jobs) {
    await run("chroot", [root, "dracut", ...dracutArgs(job)], {
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" },
      hint: `dracut in the guest failed for kernel ${job.kernel.version}: is the guest's dracut installed, and does dracut-module/91cryptpilot/module-setup.sh succeed?`,
    });
  }
  await cleanup.runOne(tag);
}

/** Lazily unmount everything mounted below DIR (not DIR itself), deepest first. */
async function unmountBelow(dir: string): Promise<void> {
  const prefix = `${dir}/`;
  const points = (await readFile("/proc/self/mounts", "utf8"))
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => m?.startsWith(prefix) === true);
  for (const m of [...new Set(points)].sort((a, b) => b.length - a.length)) {
    await run("umount", ["-l", m]).catch(() => undefined);
  }
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0)
    throw new FdeError("convert must run as root (it mounts images and uses loop devices)");
}

/** Filesystems on opened volumes: makefs, and mounting per the volume's `[mount]` table. */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { run } from "../command.ts";
import type { MakeFs, VolumeMount } from "../config/volume.ts";

/** Forced (the device was just formatted) and quiet; ext4 initialises its tables at once. */
export function mkfsCommand(type: MakeFs, device: string): [string, string[]] {
  switch (type) {
    case "ext4":
      return ["mkfs.ext4", ["-F", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", device]];
    case "xfs":
      return ["mkfs.xfs", ["-f", "-q", device]];
    case "vfat":
      return ["mkfs.vfat", ["-I", device]];
    case "swap":
      return ["mkswap", ["-f", device]];
  }
}

export async function makeFs(type: MakeFs, device: string): Promise<void> {
  const [cmd, args] = mkfsCommand(type, device);
  await run(cmd, args, { hint: `is ${cmd} installed? makefs = "${type}" needs it` });
}

/** Mount points in /proc/self/mountinfo (field 5, with octal escapes such as \040 decoded). */
export function parseMountinfo(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8))));
}

/** Devices listed in /proc/swaps. */
export function parseSwaps(text: string): string[] {
  return text
    .split("\n")
    .slice(1)
    .map((line) => line.split(/\s+/)[0])
    .filter((d): d is string => !!d);
}

function isMounted(mountpoint: string): boolean {
  return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8")).includes(mountpoint);
}

function isSwapOn(device: string): boolean {
  if (!existsSync(device)) return false;
  const real = realpathSync(device);
  return parseSwaps(readFileSync("/proc/swaps", "utf8")).some(
    (d) => d === device || (existsSync(d) && realpathSync(d) === real),
  );
}

/** Mount (or swapon) DEVICE per `mount`; a no-op when already done. Returns what was done. */
export async function mountVolume(device: string, mount: VolumeMount): Promise<string> {
  const opts = mount.options === "defaults" ? [] : ["-o", mount.options];
  if (mount.mountpoint === "swap") {
    if (isSwapOn(device)) return "swap already on";
    await run("swapon", [...opts, device]);
    return "swap on";
  }
  if (isMounted(mount.mountpoint)) return `already mounted on ${mount.mountpoint}`;
  await mkdir(mount.mountpoint, { recursive: true });
  await run("mount", [...opts, device, mount.mountpoint]);
  return `mounted on ${mount.mountpoint}`;
}

/** Undo mountVolume; a no-op when not mounted. */
export async function unmountVolume(device: string, mount: VolumeMount): Promise<void> {
  if (mount.mountpoint === "swap") {
    if (isSwapOn(device)) await run("swapoff", [device]);
  } else if (isMounted(mount.mountpoint)) {
    await run("umount", [mount.mountpoint], { hint: `is a process still using ${mount.mountpoint}?` });
  }
}

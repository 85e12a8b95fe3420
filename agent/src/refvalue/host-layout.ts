/** The running system's boot layout: /boot/efi, and /boot (its own mount, or part of /). */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { basename } from "node:path";
import { hostTree, subTree } from "../disk/image/fs.ts";
import { FdeError } from "../errors.ts";
import type { BootLayout } from "./layout.ts";

interface Mount {
  target: string;
  source: string;
}

function mounts(): Mount[] {
  // mountinfo: "... <mount point> <options> [optional fields] - <fstype> <source> <super options>"
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [left, right] = line.split(" - ");
      const unoctal = (s: string) =>
        s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(Number.parseInt(o, 8)));
      return { target: unoctal(left!.split(" ")[4]!), source: unoctal(right!.split(" ")[1]!) };
    });
}

/** GRUB's device name for a block device: "hd0,gpt2" for a partition, "lvm/vg-lv" for an LVM LV. */
export function grubDeviceOf(source: string): string {
  const name = basename(existsSync(source) ? realpathSync(source) : source);
  const sys = `/sys/class/block/${name}`;
  if (existsSync(`${sys}/dm/name`)) {
    const dmName = readFileSync(`${sys}/dm/name`, "utf8").trim();
    const uuid = existsSync(`${sys}/dm/uuid`) ? readFileSync(`${sys}/dm/uuid`, "utf8") : "";
    if (uuid.startsWith("LVM-")) return `lvm/${dmName}`;
    throw new FdeError(
      `${source} is the device-mapper device ${dmName}, which GRUB cannot read; /boot must be on a plain partition or an LVM LV`,
    );
  }
  if (!existsSync(`${sys}/partition`)) throw new FdeError(`${source} (holding /boot) is not a partition`);
  const number = readFileSync(`${sys}/partition`, "utf8").trim();
  const [major, minor] = readFileSync(`${sys}/dev`, "utf8").trim().split(":");
  const udev = `/run/udev/data/b${major}:${minor}`;
  const scheme =
    existsSync(udev) && /^E:ID_PART_ENTRY_SCHEME=dos$/m.test(readFileSync(udev, "utf8")) ? "msdos" : "gpt";
  return `hd0,${scheme}${number}`;
}

export function hostLayout(): BootLayout {
  if (!existsSync("/boot/efi/EFI")) {
    throw new FdeError(
      "/boot/efi/EFI does not exist: this system has no EFI system partition mounted at /boot/efi (or it boots in legacy BIOS mode).",
    );
  }
  const all = mounts();
  const mountOf = (target: string) => all.filter((m) => m.target === target).at(-1);
  const bootMount = mountOf("/boot");
  const layout: BootLayout = { name: "the running system", esp: hostTree("/boot/efi") };
  if (bootMount) {
    const tree = hostTree("/boot");
    layout.boot = { tree, rootFs: tree, separate: true, device: grubDeviceOf(bootMount.source) };
    return layout;
  }
  // /boot inside /: GRUB reads it only if / is a plain partition or an LVM LV. A UKI system (root
  // on dm-verity, no /boot partition) needs no /boot, so the problem is reported only if needed.
  const root = hostTree("/");
  try {
    const device = grubDeviceOf(mountOf("/")?.source ?? "");
    layout.boot = { tree: subTree(root, "/boot"), rootFs: root, separate: false, device };
  } catch (err) {
    layout.bootMissing = `/boot is not a separate mount and GRUB cannot read the root filesystem: ${(err as Error).message}`;
  }
  return layout;
}

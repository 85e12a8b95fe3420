/**
 * A small synthetic source disk for convert's host tests: GPT [ESP (FAT, EFI/debian/grub.cfg),
 * root ext4 labelled "root"]. The guest root holds a kernel file, its modules directory and a
 * stand-in `dracut` (dash script) that records its arguments and the config it was given, so
 * the host test can check convert's plumbing; the real dracut runs in the VM tests.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Arch, systemdStubPath } from "../../src/arch.ts";

const sh = (cmd: string, args: string[], input?: string) =>
  execFileSync(cmd, args, { input, stdio: ["pipe", "pipe", "pipe"] }).toString();

export const ROOT_UUID = "3f0c5d2e-7a61-4b8e-9d3c-2b1e6f4a5c70";
export const KVER = "6.1.0-test";

/** The fake dracut: writes "fake-initrd", its argv, and the content of /etc/cryptpilot/*.toml. */
const FAKE_DRACUT = `#!/bin/sh
if [ -e /etc/fail-dracut ]; then echo "dracut: simulated failure" >&2; exit 1; fi
for last; do :; done
{
  echo "fake-initrd"
  echo "args: $*"
  for f in /etc/cryptpilot/*.toml; do echo "== $f"; while IFS= read -r l; do echo "$l"; done < "$f"; done
  [ -e /usr/lib/dracut/modules.d/91cryptpilot/module-setup.sh ] && echo "module: present"
} > "$last"
`;

/**
 * The 64-byte ELF64 header of a little-endian executable for ARCH: all convert reads of a guest
 * binary or an agent to tell its architecture (arch.ts readElfArch).
 */
export function elfHeader(arch: Arch): Uint8Array {
  const h = new Uint8Array(64);
  h.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // magic, ELFCLASS64, ELFDATA2LSB, EV_CURRENT
  h[16] = 2; // ET_EXEC
  h[18] = arch.elfMachine & 0xff;
  h[19] = arch.elfMachine >> 8;
  h[20] = 1; // e_version
  return h;
}

/** A file holding only elfHeader(ARCH): an "agent" of that architecture for convert's check. */
export function elfStandIn(dir: string, arch: Arch): string {
  const path = join(dir, `agent-${arch.debian}`);
  writeFileSync(path, elfHeader(arch));
  chmodSync(path, 0o755);
  return path;
}

/**
 * A stand-in for the agent convert installs: an executable of this host's architecture (convert
 * checks the agent's ELF machine against the guest's), never run by the host tests.
 */
export function standInAgent(dir: string, name = "agent-stand-in"): string {
  const agent = join(dir, name);
  copyFileSync("/bin/true", agent);
  return agent;
}

export const BOOT_UUID = "8c1d7f8e-2b6a-4f0e-a3d2-9e5b4c3a2f10";

/**
 * separateBoot: kernels, initrd and grub.cfg on a third partition (ext4) instead of the root's /boot.
 * guestArch: the guest claims that architecture (its /usr/lib/systemd/systemd is an ELF header for
 * it, and it has that architecture's systemd EFI stub); its sh and fake dracut stay this host's.
 */
export function buildSourceImage(
  dir: string,
  opts: { failDracut?: boolean; separateBoot?: boolean; guestArch?: Arch; fullRoot?: boolean } = {},
): string {
  const tree = join(dir, "tree");
  for (const d of [
    "bin",
    "lib/x86_64-linux-gnu",
    "lib64",
    "usr/bin",
    "etc",
    "boot/grub",
    "boot/efi",
    "proc",
    "sys",
    "dev",
    "tmp",
    "var/tmp",
    "run",
    `lib/modules/${KVER}`,
  ]) {
    mkdirSync(join(tree, d), { recursive: true });
  }
  copyFileSync("/bin/dash", join(tree, "bin/sh"));
  copyFileSync("/lib/x86_64-linux-gnu/libc.so.6", join(tree, "lib/x86_64-linux-gnu/libc.so.6"));
  copyFileSync("/lib64/ld-linux-x86-64.so.2", join(tree, "lib64/ld-linux-x86-64.so.2"));
  writeFileSync(join(tree, "usr/bin/dracut"), FAKE_DRACUT);
  chmodSync(join(tree, "usr/bin/dracut"), 0o755);
  if (opts.failDracut) writeFileSync(join(tree, "etc/fail-dracut"), "");
  if (opts.guestArch) {
    const stub = join(tree, systemdStubPath(opts.guestArch).slice(1));
    mkdirSync(join(stub, ".."), { recursive: true });
    writeFileSync(stub, "systemd EFI stub stand-in\n");
    writeFileSync(join(tree, "usr/lib/systemd/systemd"), elfHeader(opts.guestArch));
    chmodSync(join(tree, "usr/lib/systemd/systemd"), 0o755);
  }
  writeFileSync(
    join(tree, "etc/fstab"),
    `UUID=${ROOT_UUID} / ext4 errors=remount-ro 0 1\nUUID=AAAA-BBBB /boot/efi vfat umask=0077 0 1\n`,
  );
  writeFileSync(join(tree, `boot/vmlinuz-${KVER}`), "not really a kernel\n");
  writeFileSync(join(tree, `boot/initrd.img-${KVER}`), "old initrd without the agent\n");
  writeFileSync(join(tree, "boot/vmlinuz-5.0.0-gone"), "kernel whose modules were removed\n");
  writeFileSync(
    join(tree, "boot/grub/grub.cfg"),
    `search --no-floppy --fs-uuid --set=root ${ROOT_UUID}\nmenuentry 'Debian' {\n\tlinux\t/boot/vmlinuz-${KVER} root=UUID=${ROOT_UUID} ro quiet\n\tinitrd\t/boot/initrd.img-${KVER}\n}\n`,
  );
  const searchUuid = opts.separateBoot ? BOOT_UUID : ROOT_UUID;
  let bootFs: string | undefined;
  if (opts.separateBoot) {
    const bootTree = join(dir, "boot-tree");
    sh("mv", [join(tree, "boot"), bootTree]);
    mkdirSync(join(tree, "boot/efi"), { recursive: true });
    sh("rm", ["-rf", join(bootTree, "efi")]);
    bootFs = join(dir, "boot.ext4");
    sh("mkfs.ext4", ["-q", "-b", "4096", "-L", "oldboot", "-U", BOOT_UUID, "-d", bootTree, bootFs, "16M"]);
  }
  mkdirSync(join(tree, "data"), { recursive: true });
  writeFileSync(join(tree, "data/hello.txt"), "hello from the guest\n");

  const root = join(dir, "root.ext4");
  sh("mkfs.ext4", ["-q", "-b", "4096", "-L", "root", "-U", ROOT_UUID, "-d", tree, root, "64M"]);
  if (opts.fullRoot) fillFilesystem(root, join(dir, "fill-mnt"));
  const esp = join(dir, "esp.fat");
  sh("mkfs.vfat", ["-C", esp, String(32 * 1024)]);
  const espCfg = join(dir, "esp-grub.cfg");
  writeFileSync(
    espCfg,
    `search.fs_uuid ${searchUuid} root hd0,gpt2\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n`,
  );
  const mt = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
  execFileSync("mmd", ["-i", esp, "::/EFI", "::/EFI/debian"], { env: mt });
  execFileSync("mcopy", ["-i", esp, espCfg, "::/EFI/debian/grub.cfg"], { env: mt });

  const disk = join(dir, "source.raw");
  sh("truncate", ["-s", `${1 + 32 + 64 + 16 + 1}M`, disk]);
  const bootLine = bootFs ? `start=${97 * 2048}, size=${16 * 2048}, type=L\n` : "";
  sh(
    "sfdisk",
    ["-q", disk],
    `label: gpt\nstart=2048, size=${32 * 2048}, type=U\nstart=${33 * 2048}, size=${64 * 2048}, type=L\n${bootLine}`,
  );
  if (bootFs) sh("dd", [`if=${bootFs}`, `of=${disk}`, "bs=1M", "seek=97", "conv=notrunc", "status=none"]);
  sh("dd", [`if=${esp}`, `of=${disk}`, "bs=1M", "seek=1", "conv=notrunc", "status=none"]);
  sh("dd", [`if=${root}`, `of=${disk}`, "bs=1M", "seek=33", "conv=notrunc", "status=none"]);
  return disk;
}

/** Fills the ext4 image's free blocks with a file (a root with no room left, as cloud images ship). */
function fillFilesystem(image: string, mnt: string): void {
  mkdirSync(mnt, { recursive: true });
  sh("mount", ["-o", "loop", image, mnt]);
  try {
    // dd stops at ENOSPC with a non-zero exit: that is the point.
    spawnSync("dd", ["if=/dev/zero", `of=${join(mnt, "data/filler")}`, "bs=1M", "status=none"]);
    // Root fills the reserved blocks too (convert runs as root); what stays free is ext4's delayed-
    // allocation reserve (about 2% here), which no file gets.
    const { bfree, bsize } = statfsSync(mnt);
    if (bfree * bsize > 2 * 1024 * 1024)
      throw new Error(`${image}: ${bfree * bsize} bytes still free after filling`);
  } finally {
    sh("umount", [mnt]);
  }
}

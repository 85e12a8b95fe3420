/**
 * Debian's real signed shim, GRUB and kernel, fetched at test time with `apt-get download` into
 * agent/test/refvalue/cache (git-ignored) and unpacked with dpkg-deb; later runs reuse them.
 */
import { existsSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { sh } from "../../testkit/sh.ts";

const CACHE = join(import.meta.dir, "cache");

export interface DebianBoot {
  shim: string;
  grub: string;
  kernel: string;
  kernelVersion: string;
}

function extract(deb: string, member: string, out: string): void {
  const tmp = `${out}.tmp`;
  mkdirSync(tmp, { recursive: true });
  sh(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "$3"', "sh", deb, tmp, member]);
  renameSync(tmp, out);
}

export function debianBoot(): DebianBoot {
  const debs = join(CACHE, "debs");
  mkdirSync(debs, { recursive: true });
  const find = (prefix: string) => readdirSync(debs).find((f) => f.startsWith(prefix) && f.endsWith(".deb"));
  if (!find("shim-signed_") || !find("grub-efi-amd64-signed_") || !find("linux-image-6")) {
    const kernelPkg = /Depends: (linux-image-\S+)/.exec(
      sh(["apt-cache", "depends", "linux-image-amd64"]),
    )?.[1];
    if (!kernelPkg) throw new Error("apt-cache does not know linux-image-amd64's kernel package");
    const p = Bun.spawnSync(["apt-get", "download", "shim-signed", "grub-efi-amd64-signed", kernelPkg], {
      cwd: debs,
      stderr: "pipe",
    });
    if (p.exitCode !== 0) throw new Error(`apt-get download failed: ${p.stderr.toString()}`);
  }
  const root = join(CACHE, "root");
  if (!existsSync(join(root, "shim")))
    extract(join(debs, find("shim-signed_")!), "./usr/lib/shim/*", join(root, "shim"));
  if (!existsSync(join(root, "grub")))
    extract(join(debs, find("grub-efi-amd64-signed_")!), "./usr/lib/grub/*", join(root, "grub"));
  if (!existsSync(join(root, "kernel")))
    extract(join(debs, find("linux-image-6")!), "./boot/vmlinuz-*", join(root, "kernel"));
  // The package's one kernel (a copy an older test run left beside it, vmlinuz-*.unsigned, is not it).
  const vmlinuz = readdirSync(join(root, "kernel/boot")).find((f) => /^vmlinuz-[\w.+-]+-amd64$/.test(f))!;
  return {
    shim: join(root, "shim/usr/lib/shim/shimx64.efi.signed"),
    grub: join(root, "grub/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    kernel: join(root, "kernel/boot", vmlinuz),
    kernelVersion: vmlinuz.slice("vmlinuz-".length),
  };
}

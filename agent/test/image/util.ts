/** Test data for the image readers: seeded bytes and a sample directory tree (sh, tempDir: agent/testkit/sh.ts). */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Deterministic pseudo-random bytes (a seeded xorshift), so failures reproduce. */
export function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export interface Sample {
  /** path -> content of every regular file written. */
  files: Map<string, Uint8Array>;
  /** symlink path -> the path whose content it must show. */
  links: Map<string, string>;
}

/** A directory tree exercising the readers: sizes around block boundaries, long names, nesting. */
export function writeSample(root: string, opts: { symlinks: boolean; manyFiles?: number }): Sample {
  const files = new Map<string, Uint8Array>();
  const links = new Map<string, string>();
  const put = (path: string, data: Uint8Array) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), data);
    files.set(path, data);
  };
  put("/empty", new Uint8Array(0));
  put("/one", bytes(1, 1));
  put("/EFI/BOOT/BOOTX64.EFI", bytes(4095, 2));
  put("/EFI/debian/grubx64.efi", bytes(4096, 3));
  put("/EFI/debian/A very long file name with spaces.cfg", bytes(4097, 4));
  put("/vmlinuz-6.1.0-56-amd64", bytes(3 * 1024 * 1024 + 17, 5));
  put("/deep/a/b/c/d/e/initrd.img-6.1.0-56-amd64", bytes(200_000, 6));
  for (let i = 0; i < (opts.manyFiles ?? 0); i++)
    put(`/many/file-with-a-longish-name-${i}`, bytes(10, 100 + i));
  if (opts.symlinks) {
    symlinkSync(".", join(root, "boot"));
    links.set("/boot/vmlinuz-6.1.0-56-amd64", "/vmlinuz-6.1.0-56-amd64");
    symlinkSync("vmlinuz-6.1.0-56-amd64", join(root, "vmlinuz"));
    links.set("/vmlinuz", "/vmlinuz-6.1.0-56-amd64");
    symlinkSync("/deep/a/b/c/d/e/initrd.img-6.1.0-56-amd64", join(root, "initrd.img"));
    links.set("/initrd.img", "/deep/a/b/c/d/e/initrd.img-6.1.0-56-amd64");
    symlinkSync("../a/b/c/d/e/initrd.img-6.1.0-56-amd64", join(root, "deep/a/rel-initrd"));
    links.set("/deep/a/rel-initrd", "/deep/a/b/c/d/e/initrd.img-6.1.0-56-amd64");
    // A slow symlink (target >= 60 bytes is stored in a data block, not in the inode).
    const slow = `/deep/a/b/c/d/e/${"."}/initrd.img-6.1.0-56-amd64`.padStart(70, "/");
    symlinkSync(slow, join(root, "slow-link"));
    links.set("/slow-link", "/deep/a/b/c/d/e/initrd.img-6.1.0-56-amd64");
  }
  return { files, links };
}

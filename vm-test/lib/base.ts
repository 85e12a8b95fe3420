/** The cached guest base image (built by build-base-image.sh on first use). */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBinfmt } from "./binfmt.ts";
import type { BaseImage, GuestArch, GuestSuite } from "./scenario.ts";

export async function baseImage(
  repo: string,
  suite: GuestSuite = "bookworm",
  arch: GuestArch = "amd64",
): Promise<BaseImage> {
  const started = Date.now();
  // A foreign root's package scripts and dracut run under qemu-user.
  if (arch !== hostArch()) await ensureBinfmt(arch);
  const script = join(repo, "vm-test", "lib", "build-base-image.sh");
  const proc = Bun.spawn([script, suite, arch], { stdout: "pipe", stderr: "inherit" });
  const dir = (await new Response(proc.stdout).text()).trim().split("\n").at(-1) ?? "";
  if ((await proc.exited) !== 0 || !dir)
    throw new Error(`building the ${suite} ${arch} base image failed (output above)`);
  const seconds = (Date.now() - started) / 1000;
  if (seconds > 5) console.log(`${suite} ${arch} base image built in ${seconds.toFixed(0)} s`);
  const kver = readFileSync(join(dir, "kver"), "utf8").trim();
  // Marks the image as in use, so a rebuild by another run does not delete it under us.
  writeFileSync(join(dir, "last-used"), `${new Date().toISOString()}\n`);
  return {
    suite,
    arch,
    dir,
    disk: join(dir, "disk.raw"),
    kernel: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    kver,
  };
}

/** The build host's Debian architecture (vm-test runs on x86-64 or arm64 Linux). */
export function hostArch(): GuestArch {
  return process.arch === "arm64" ? "arm64" : "amd64";
}

/** The cached guest base image (built by build-base-image.sh on first use). */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BaseImage, GuestSuite } from "./scenario.ts";

export async function baseImage(repo: string, suite: GuestSuite = "bookworm"): Promise<BaseImage> {
  const started = Date.now();
  const script = join(repo, "vm-test", "lib", "build-base-image.sh");
  const proc = Bun.spawn([script, suite], { stdout: "pipe", stderr: "inherit" });
  const dir = (await new Response(proc.stdout).text()).trim().split("\n").at(-1) ?? "";
  if ((await proc.exited) !== 0 || !dir)
    throw new Error(`building the ${suite} base image failed (output above)`);
  const seconds = (Date.now() - started) / 1000;
  if (seconds > 5) console.log(`${suite} base image built in ${seconds.toFixed(0)} s`);
  const kver = readFileSync(join(dir, "kver"), "utf8").trim();
  // Marks the image as in use, so a rebuild by another run does not delete it under us.
  writeFileSync(join(dir, "last-used"), `${new Date().toISOString()}\n`);
  return {
    suite,
    dir,
    disk: join(dir, "disk.raw"),
    kernel: join(dir, "vmlinuz"),
    initrd: join(dir, "initrd.img"),
    kver,
  };
}

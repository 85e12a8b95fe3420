/**
 * binfmt_misc for a foreign guest architecture: the arm64 base image's package scripts, and
 * convert's chroot dracut in an arm64 image, run arm64 executables on the build host under
 * qemu-user. Registers Debian's qemu-user-static entry (fix-binary, so it works inside chroots)
 * when the host has the package but no entry yet; a machine where that is impossible skips the
 * scenarios that need it (binfmtMissing) instead of failing them.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { ARCHES } from "../../agent/src/arch.ts";
import type { GuestArch } from "./scenario.ts";

const BINFMT = "/proc/sys/fs/binfmt_misc";

/** QEMU's name for the architecture (uname -m; its binfmt entry is qemu-NAME). */
const qemuName = (arch: GuestArch) => ARCHES.find((a) => a.debian === arch)!.uname;

const entry = (arch: GuestArch) => `${BINFMT}/qemu-${qemuName(arch)}`;
const enabled = (arch: GuestArch) =>
  existsSync(entry(arch)) && readFileSync(entry(arch), "utf8").split("\n")[0] === "enabled";

/** Registers the entry if needed; throws with what is missing. */
export async function ensureBinfmt(arch: GuestArch): Promise<void> {
  if (enabled(arch)) return;
  const conf = `/usr/lib/binfmt.d/qemu-${qemuName(arch)}.conf`;
  if (!existsSync(conf)) throw new Error(`${conf} is missing: install qemu-user-static`);
  if (!existsSync(`${BINFMT}/register`)) {
    const mount = Bun.spawnSync(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT]);
    if (mount.exitCode !== 0) throw new Error(`cannot mount binfmt_misc on ${BINFMT}: ${mount.stderr}`);
  }
  writeFileSync(`${BINFMT}/register`, readFileSync(conf, "utf8").trim());
  if (!enabled(arch)) throw new Error(`registering ${conf} in ${BINFMT} did not enable it`);
}

/** A skip reason when the architecture's executables cannot run on this host, else undefined. */
export async function binfmtMissing(arch: GuestArch): Promise<string | undefined> {
  try {
    await ensureBinfmt(arch);
    return undefined;
  } catch (e) {
    return `no binfmt_misc entry for ${arch} executables (${(e as Error).message})`;
  }
}

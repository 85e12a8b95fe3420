/**
 * A failed boot stage fails closed. In a confidential VM the console belongs to the host: dracut's
 * emergency shell would be a root shell inside the correctly measured guest, from which the host
 * could ask the key broker for the keys once it lets the network back. So a failure prints its one
 * paragraph, closes what the stages opened (mounts, our dm mappings, the VG), waits long enough for
 * the error to be read, and powers off, reboots or halts ([boot] on_failure in global.toml, which
 * the initrd carries and so is measured). "shell" is the documented debugging opt-in.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { run } from "../command.ts";
import type { FailureAction, GlobalConfig } from "../config/fde.ts";
import { deactivateVg, GUEST_LVM_SYSTEM_DIR } from "../disk/lvm.ts";
import * as N from "../disk/names.ts";

/** systemd's marker of an initrd (the stage units' ConditionPathExists= too). */
export const INITRD_RELEASE = "/etc/initrd-release";

/** How one thing the stages opened is closed. */
export interface Teardown {
  kind: "umount" | "dm" | "luks" | "vg";
  target: string;
}

/**
 * Our mappings, top of the stack first: the order they must be closed in. ROOTFS is the snapshot
 * (dm-snapshot backend) or the verity device (overlayfs backend); LUKS ones go through cryptsetup,
 * which also drops the integrity mapping and the volume key from the kernel keyring.
 */
const MAPPINGS: Teardown[] = [
  { kind: "dm", target: N.ROOTFS },
  { kind: "dm", target: N.ROOTFS_EXTENDED },
  { kind: "luks", target: N.DELTA },
  { kind: "dm", target: N.ROOTFS_VERITY },
  { kind: "luks", target: N.ROOTFS_DECRYPTED },
];

/** Mount points in /proc/self/mounts text (octal escapes such as \040 decoded), in mount order. */
export function mountPoints(mounts: string): string[] {
  return mounts
    .split("\n")
    .map((line) => line.split(" ")[1])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
}

/**
 * What to close, in order: the mounts on or under SYSROOT and RUNDIR (newest first), then the
 * mappings that exist, then the VG. Pure, so the order is tested without a guest.
 */
export function teardownPlan(
  mounts: string,
  mapped: (name: string) => boolean,
  dirs: { sysroot: string; runDir: string },
): Teardown[] {
  const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);
  const ours = mountPoints(mounts).filter((p) => under(p, dirs.sysroot) || under(p, dirs.runDir));
  return [
    ...ours.reverse().map((target): Teardown => ({ kind: "umount", target })),
    ...MAPPINGS.filter((m) => mapped(m.target)),
    { kind: "vg", target: N.VG },
  ];
}

export interface FailureDeps {
  /** Closes one thing; rejects when it could not. */
  close(step: Teardown): Promise<void>;
  /** Runs a program; rejects when it fails. */
  exec(cmd: string, args: string[]): Promise<void>;
  /** Only an initrd is torn down and stopped: the stage run by hand must not power off a host. */
  inInitrd(): boolean;
  readMounts(): Promise<string>;
  mapped(name: string): boolean;
  sleep(ms: number): Promise<void>;
  write(line: string): void;
}

export const realFailureDeps: FailureDeps = {
  async close(step) {
    switch (step.kind) {
      case "umount":
        return realFailureDeps.exec("umount", [step.target]);
      case "dm":
        return realFailureDeps.exec("dmsetup", ["remove", "--retry", step.target]);
      case "luks":
        return realFailureDeps.exec("cryptsetup", ["close", step.target]);
      case "vg":
        return deactivateVg({ systemDir: GUEST_LVM_SYSTEM_DIR }, step.target);
    }
  },
  async exec(cmd, args) {
    await run(cmd, args);
  },
  inInitrd: () => existsSync(INITRD_RELEASE),
  readMounts: () => readFile("/proc/self/mounts", "utf8"),
  mapped: (name) => existsSync(N.mapper(name)),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  // console.error, as log.ts does: journal+console in the initrd.
  write: (line) => console.error("%s", line),
};

/** Close everything in the plan, best effort: one thing that stays open does not keep the rest. */
export async function teardown(plan: Teardown[], deps: FailureDeps): Promise<void> {
  const closed: string[] = [];
  for (const step of plan) {
    try {
      await deps.close(step);
      closed.push(step.kind === "vg" ? `volume group ${step.target}` : step.target);
    } catch (err) {
      deps.write(`cryptpilot-fde: could not close ${step.target}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  if (closed.length) deps.write(`cryptpilot-fde: closed ${closed.join(", ")}`);
}

const ACTION_WORDS: Record<Exclude<FailureAction, "shell">, string> = {
  poweroff: "powering off",
  reboot: "rebooting",
  halt: "halting",
};

/** The last lines of a failed stage's report: what happens next, and where that is configured. */
export function failureTail(boot: GlobalConfig["boot"]): string {
  const base = "The boot stops here: there is no fallback to an unverified root filesystem.";
  if (boot.onFailure === "shell") {
    return `${base} [boot] on_failure = "shell" in global.toml: opening the emergency shell (debugging only: a shell on the console of a confidential VM is a shell for the host).`;
  }
  return `${base} Closing what this stage opened and ${ACTION_WORDS[boot.onFailure]} in ${boot.failurePauseSecs} s ([boot] on_failure and failure_pause_secs in global.toml); there is no shell.`;
}

/**
 * After the failure paragraph and failureTail were printed: close, pause, stop the machine. Returns
 * only with "shell" (the unit's debug drop-in then starts emergency.target) or when the machine
 * could not be stopped; the exit status then fails the unit, whose FailureAction= powers off.
 */
export async function failClosed(
  boot: GlobalConfig["boot"],
  dirs: { sysroot: string; runDir: string },
  deps: FailureDeps = realFailureDeps,
): Promise<void> {
  if (!deps.inInitrd()) {
    deps.write(
      `cryptpilot-fde: not in an initrd (no ${INITRD_RELEASE}): nothing is closed and the machine keeps running`,
    );
    return;
  }
  let mounts = "";
  try {
    mounts = await deps.readMounts();
  } catch {
    // No mount table: close the mappings anyway.
  }
  await teardown(teardownPlan(mounts, deps.mapped, dirs), deps);
  if (boot.onFailure === "shell") return;
  if (boot.failurePauseSecs > 0) await deps.sleep(boot.failurePauseSecs * 1000);
  deps.write(`cryptpilot-fde: ${ACTION_WORDS[boot.onFailure]} now`);
  try {
    await deps.exec("sync", []);
    // Twice --force: the kernel's reboot(2) at once, from systemctl, with nothing left to race
    // against: no unit is stopped, so nothing can start a shell in between.
    await deps.exec("systemctl", ["--force", "--force", boot.onFailure]);
  } catch (err) {
    deps.write(`cryptpilot-fde: could not stop the machine: ${(err as Error).message.split("\n")[0]}`);
  }
}

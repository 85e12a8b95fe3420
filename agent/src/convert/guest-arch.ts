/**
 * The guest's architecture, checked before convert changes anything: the agent it installs (its
 * own executable, or the image's package's) must be of the guest's architecture, or the converted
 * image cannot boot; and a guest of another architecture than this host's has its dracut run in
 * a chroot under qemu-user, which needs binfmt_misc to hand the guest's executables to it.
 * Both are refused with what to do instead of failing later (or booting nothing).
 */
import { closeSync, lstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { join } from "node:path";
import { type Arch, archName, hostArch, readElfArch } from "../arch.ts";
import { FdeError } from "../errors.ts";
import { OPEN_TO_INSPECT } from "../file-type.ts";
import { log } from "../log.ts";
import { VERSION } from "../version.ts";
import { AGENT_PATH, type Assets } from "./guest.ts";
import { guestAgentSource, PACKAGE_NAME } from "./guest-package.ts";

/**
 * Guest executables whose ELF machine is the guest's architecture, first present wins: systemd
 * (what boots), bash (what dracut runs in), sh (what a minimal root has).
 */
export const GUEST_ARCH_PROBES = ["usr/lib/systemd/systemd", "usr/bin/bash", "bin/sh"] as const;
/** Symbolic links followed inside the guest root before giving up: the kernel's own limit (ELOOP). */
export const MAX_SYMLINK_HOPS = 40;
/** Where the kernel lists binfmt_misc's interpreters (qemu-user's are qemu-<uname -m>). */
export const BINFMT_MISC = "/proc/sys/fs/binfmt_misc";
/** A binfmt_misc entry is a few lines; more is not one. */
const BINFMT_ENTRY_MAX_BYTES = 4096;

/** The host convert runs on (tests pass another one). */
export interface ConvertHost {
  arch: Arch;
  /** binfmt_misc's directory, normally BINFMT_MISC. */
  binfmtDir: string;
}

export const thisHost = (): ConvertHost => ({ arch: hostArch(), binfmtDir: BINFMT_MISC });

/**
 * PATH (relative to ROOT) with every symbolic link resolved inside ROOT, as a chroot into ROOT
 * would: absolute targets start again at ROOT and ".." stops at it, so nothing of the host is
 * read. Returns the resolved path relative to ROOT, or undefined when a component is missing.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  const done: string[] = [];
  const todo = path.split("/").filter(Boolean);
  let hops = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === ".") continue;
    if (part === "..") {
      done.pop();
      continue;
    }
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(join(root, ...done, part));
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) {
      done.push(part);
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS)
      throw new FdeError(
        `/${path} in the guest image: more than ${MAX_SYMLINK_HOPS} symbolic links to follow (a loop?)`,
      );
    const target = readlinkSync(join(root, ...done, part));
    if (target.startsWith("/")) done.length = 0;
    todo.unshift(...target.split("/").filter(Boolean));
  }
  return done.join("/");
}

/** The guest's architecture from the first of GUEST_ARCH_PROBES it has, and that file. */
export function guestArch(root: string): { arch: Arch; probe: string } {
  for (const probe of GUEST_ARCH_PROBES) {
    const resolved = resolveInRoot(root, probe);
    if (resolved === undefined) continue;
    return { arch: readElfArch(join(root, resolved), `the guest's /${probe}`), probe };
  }
  throw new FdeError(
    `cannot tell the guest image's architecture: it has none of ${GUEST_ARCH_PROBES.map((p) => `/${p}`).join(", ")}`,
    { hint: "is the chosen partition (--rootfs-part-num) the guest's root filesystem?" },
  );
}

/**
 * Why this host cannot run ARCH's executables in a chroot, or undefined when it can: binfmt_misc
 * must have qemu-user's entry for it enabled, with the F flag (the interpreter opened when it was
 * registered, so it need not exist inside the guest's root).
 */
export function emulationProblem(arch: Arch, binfmtDir: string): string | undefined {
  const entry = join(binfmtDir, `qemu-${arch.uname}`);
  const text = readSmall(entry);
  if (text === undefined)
    return `${entry} does not exist (binfmt_misc has no qemu-user entry for ${arch.uname})`;
  const lines = text.split("\n");
  if (lines[0]?.trim() !== "enabled") return `${entry} is disabled`;
  const flags = /^flags:\s*(\S*)/m.exec(text)?.[1] ?? "";
  if (!flags.includes("F"))
    return `${entry} lacks the F flag, so its interpreter would be looked up inside the guest's root`;
  const status = readSmall(join(binfmtDir, "status"))?.trim();
  if (status !== undefined && status !== "enabled")
    return `${join(binfmtDir, "status")} says binfmt_misc is ${status}`;
  return undefined;
}

/** At most BINFMT_ENTRY_MAX_BYTES of a /proc file (whose size stat reports as 0), or undefined if absent. */
function readSmall(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, OPEN_TO_INSPECT);
  } catch {
    return undefined;
  }
  try {
    const buf = new Uint8Array(BINFMT_ENTRY_MAX_BYTES);
    const n = readSync(fd, buf, 0, buf.length, null);
    return new TextDecoder().decode(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

/**
 * Checks the guest at ROOT against the agent convert would install and this HOST, before
 * anything is written; returns the guest's architecture (the UKI's stub and ESP name follow it).
 */
export async function checkGuestArch(root: string, assets: Assets, host: ConvertHost): Promise<Arch> {
  const guest = guestArch(root);
  const source = await guestAgentSource(root);
  const fromPackage = source.from === "package";
  const agentWhat = fromPackage
    ? `the image's ${PACKAGE_NAME} package's /${AGENT_PATH}`
    : `this convert's agent ${assets.agentBinary}`;
  const agentPath = fromPackage
    ? join(root, resolveInRoot(root, AGENT_PATH) ?? AGENT_PATH)
    : assets.agentBinary;
  const agent = readElfArch(agentPath, agentWhat);
  const g = guest.arch;
  if (agent !== g) {
    const deb = `${PACKAGE_NAME}_${VERSION}_${g.debian}.deb`;
    throw new FdeError(
      `the guest image is ${archName(g)} (its /${guest.probe}), but ${agentWhat} is ${archName(agent)}: the converted image could not run it at boot`,
      {
        hint: fromPackage
          ? `install the ${g.debian} package into the image instead (make deb ARCH=${g.debian} builds dist/${deb}; dpkg -i it in the image's chroot) and convert again`
          : `install the ${g.debian} package into the image (make deb ARCH=${g.debian} builds dist/${deb}; dpkg -i it in the image's chroot), which convert then uses; or convert with the ${g.debian} build of cryptpilot-fde (make build ARCH=${g.debian})`,
      },
    );
  }
  if (g !== host.arch) {
    const problem = emulationProblem(g, host.binfmtDir);
    if (problem)
      throw new FdeError(
        `the guest image is ${archName(g)} and this host ${archName(host.arch)}: convert runs the guest's dracut in a chroot under qemu-user, but ${problem}`,
        {
          hint: `install qemu-user-static and binfmt-support on this host (they register qemu-${g.uname} with the F flag), or convert on an ${g.debian} host`,
        },
      );
  }
  log.info(
    `  guest architecture: ${archName(g)} (its /${guest.probe})${g === host.arch ? "" : `; its dracut runs under qemu-${g.uname} (binfmt_misc)`}`,
  );
  return g;
}

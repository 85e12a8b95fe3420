/**
 * Which confidential-computing platform this guest runs on, told by the CPU and the kernel, not
 * by the attestation interface: a TDX or SEV-SNP guest whose driver is missing must fail naming
 * the driver, never look like a plain VM and quietly send TPM evidence (a vTPM in a CVM may be
 * emulated by the host) or nothing at all.
 *
 * Signs, each set by the kernel from state the host cannot change inside the TEE:
 * - TDX: the CPU flag `tdx_guest` in /proc/cpuinfo (X86_FEATURE_TDX_GUEST, forced on by the kernel
 *   when CPUID leaf 0x21 reads "IntelTDX", which the TDX module answers; Linux 5.19+).
 * - SEV-SNP: the `sev-guest` platform device (/sys/devices/platform/sev-guest), which the kernel's
 *   SEV code registers when SNP is active (from the SEV_STATUS MSR; Linux 5.19+), whether or not
 *   the sev-guest module is loaded; and /sys/devices/system/cpu/sev (Linux 6.11+, same condition).
 *   The `sev_snp` CPU flag is not used: it says what the CPU can do and shows on SNP hosts (bare
 *   metal) too, where it would stop a TPM-only boot.
 * - An attestation interface itself (a configfs-tsm provider, /dev/tdx_guest, /dev/sev-guest).
 * The kernel's "Memory Encryption Features active" line says the same, but only in the kernel
 * log, which can have wrapped or be restricted by the time the stage runs; it is not read.
 */
import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname } from "node:path";
import { FdeError } from "../errors.ts";
import { isConfigfs, type TsmFs, tsmProvider } from "./tsm.ts";
import type { HostPaths } from "./types.ts";

export type Platform = "tdx" | "snp" | "none";

/** What provides a TEE's attestation, for detection and for the error when it is missing. */
export interface TeeDriver {
  /** Name in messages. */
  readonly name: string;
  /** The configfs-tsm report `provider` the driver registers (Linux 6.7+). */
  readonly tsmProvider: string;
  /** The driver's ioctl device, the interface before configfs-tsm (and still there after). */
  readonly device: string;
  /** The module that provides both (modprobe name); it pulls in tsm and configfs itself. */
  readonly module: string;
}

/** The guest drivers per TEE; the dracut module and the stage's modprobe list name the same. */
export const TEE_DRIVERS: Readonly<Record<Exclude<Platform, "none">, TeeDriver>> = {
  tdx: { name: "Intel TDX", tsmProvider: "tdx_guest", device: "/dev/tdx_guest", module: "tdx_guest" },
  snp: { name: "AMD SEV-SNP", tsmProvider: "sev_guest", device: "/dev/sev-guest", module: "sev_guest" },
};

/** The configfs-tsm core module: `tsm` (Linux 6.7+, Debian 13's 6.12), `tsm_report` since the 2025 coco/tsm split. */
export const TSM_MODULES = ["tsm", "tsm_report"] as const;

/** Kernel paths of the signs (under HostPaths.sysRoot). */
export const CPUINFO = "/proc/cpuinfo";
export const SNP_PLATFORM_DEVICE = "/sys/devices/platform/sev-guest";
export const SNP_SYSFS_DIR = "/sys/devices/system/cpu/sev";

/**
 * /proc/cpuinfo is read up to here: the first CPU's block (~1.5 KiB) holds the flags line; a VM
 * with hundreds of CPUs has a file of hundreds of KiB the kernel would format for nothing.
 */
export const CPUINFO_READ_MAX = 64 * 1024;

/** The attestation interfaces present; the attesters pick theirs from this. */
export interface AttestInterfaces {
  /** configfs-tsm report provider ("tdx_guest", "sev_guest"); undefined without configfs-tsm. */
  tsmProvider?: string;
  /** configfs is mounted at the parent of the tsm root (for the error when tsm is missing). */
  configfs: boolean;
  /** /dev/tdx_guest exists. */
  tdxGuest: boolean;
  /** /dev/sev-guest exists. */
  sevGuest: boolean;
}

export interface PlatformInfo {
  platform: Platform;
  /** Why, for messages and the log, e.g. "CPU flag tdx_guest in /proc/cpuinfo"; empty for none. */
  signs: string[];
  interfaces: AttestInterfaces;
}

/** The `flags` of the first CPU in /proc/cpuinfo (empty when unreadable, e.g. not x86). */
export async function cpuFlags(sysRoot: string): Promise<Set<string>> {
  let text: string;
  try {
    const handle = await open(`${sysRoot}${CPUINFO}`, "r");
    try {
      const buf = new Uint8Array(CPUINFO_READ_MAX);
      let done = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buf, done, buf.length - done, null);
        if (bytesRead === 0) break;
        done += bytesRead;
        if (done === buf.length) break;
      }
      text = new TextDecoder().decode(buf.subarray(0, done));
    } finally {
      await handle.close();
    }
  } catch {
    return new Set();
  }
  const line = /^flags\s*:(.*)$/m.exec(text);
  return new Set(line ? line[1]!.trim().split(/\s+/) : []);
}

/** The attestation interfaces present now: the configfs-tsm provider and the two devices. */
export async function probeInterfaces(paths: HostPaths, fs?: TsmFs): Promise<AttestInterfaces> {
  return {
    tsmProvider: await tsmProvider({ root: paths.tsmRoot, fs }),
    configfs: isConfigfs(configfsRoot(paths.tsmRoot)),
    // existsSync: a device node is not opened (opening is the driver's business), just looked up.
    tdxGuest: existsSync(`${paths.sysRoot}${TEE_DRIVERS.tdx.device}`),
    sevGuest: existsSync(`${paths.sysRoot}${TEE_DRIVERS.snp.device}`),
  };
}

/** The platform and its attestation interfaces; a few file reads, no subprocess. */
export async function detectPlatform(paths: HostPaths, fs?: TsmFs): Promise<PlatformInfo> {
  const root = paths.sysRoot;
  const flags = await cpuFlags(root);
  const interfaces = await probeInterfaces(paths, fs);
  const { tsmProvider: provider, tdxGuest, sevGuest } = interfaces;
  const tdx: string[] = [];
  if (flags.has("tdx_guest")) tdx.push(`CPU flag tdx_guest in ${CPUINFO}`);
  if (provider === TEE_DRIVERS.tdx.tsmProvider) tdx.push(`configfs-tsm provider ${provider}`);
  if (tdxGuest) tdx.push(TEE_DRIVERS.tdx.device);
  const snp: string[] = [];
  if (existsSync(`${root}${SNP_PLATFORM_DEVICE}`)) snp.push(`the kernel's ${SNP_PLATFORM_DEVICE}`);
  if (existsSync(`${root}${SNP_SYSFS_DIR}`)) snp.push(SNP_SYSFS_DIR);
  if (provider === TEE_DRIVERS.snp.tsmProvider) snp.push(`configfs-tsm provider ${provider}`);
  if (sevGuest) snp.push(TEE_DRIVERS.snp.device);
  if (tdx.length > 0 && snp.length > 0) {
    throw new FdeError(
      `conflicting TEE signs: Intel TDX (${tdx.join(", ")}) and AMD SEV-SNP (${snp.join(", ")})`,
      { hint: `set tee = "tdx" or tee = "snp" in the kbs provider config to choose` },
    );
  }
  if (tdx.length > 0) return { platform: "tdx", signs: tdx, interfaces };
  if (snp.length > 0) return { platform: "snp", signs: snp, interfaces };
  return { platform: "none", signs: [], interfaces };
}

/** The interface an attester for `platform` should use: configfs-tsm first, else the device. */
export function attestInterface(
  platform: Exclude<Platform, "none">,
  interfaces: AttestInterfaces,
): "configfs-tsm" | "device" | undefined {
  const driver = TEE_DRIVERS[platform];
  if (interfaces.tsmProvider === driver.tsmProvider) return "configfs-tsm";
  if (platform === "tdx" ? interfaces.tdxGuest : interfaces.sevGuest) return "device";
  return undefined;
}

/** configfs's mount point from the tsm root (its parent). */
function configfsRoot(tsmRoot: string): string {
  return dirname(tsmRoot);
}

/**
 * The error for a TEE guest without its attestation interface: names the platform, what was
 * looked for and the module that provides it. `tsmRoot` is where configfs-tsm was looked for.
 */
export function missingInterface(
  info: PlatformInfo & { platform: Exclude<Platform, "none"> },
  tsmRoot: string,
): { message: string; hint: string } {
  const driver = TEE_DRIVERS[info.platform];
  const tsm = !info.interfaces.configfs
    ? `configfs is not mounted at ${configfsRoot(tsmRoot)}`
    : info.interfaces.tsmProvider === undefined
      ? `${tsmRoot}/report is missing`
      : `${tsmRoot}/report has provider "${info.interfaces.tsmProvider}", not ${driver.tsmProvider}`;
  return {
    message: `this is an ${driver.name} guest (${info.signs.join(", ")}) but its attestation interface is missing: ${tsm} and there is no ${driver.device}; TPM or sample evidence is not sent in its place`,
    hint: `the kernel module ${driver.module} provides both (with ${TSM_MODULES.join(" or ")} and configfs for ${tsmRoot}/report, Linux 6.7+); build the initrd with the cryptpilot dracut module, which installs and loads them, and check that this kernel has ${driver.module} (built in or as a module)`,
  };
}

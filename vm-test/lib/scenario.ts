/** The scenario API: what a file in vm-test/scenarios/ exports and what it gets to work with. */
import type { Markers } from "./markers.ts";
import type { BootEnd, GuestForward } from "./qemu.ts";

export interface Scenario {
  /** One line for the run log and `vm-test/run --list`. */
  description: string;
  /** Returns a reason to skip (e.g. a missing tool), or undefined to run. */
  skip?: () => string | undefined | Promise<string | undefined>;
  /** false: run only when named, not by `vm-test/run all` (e.g. harness self-tests). */
  inAll?: boolean;
  /** The Debian release of the guest base image (default bookworm, Debian 12). */
  guest?: GuestSuite;
  /** The guest's architecture (default amd64; arm64 boots under qemu-system-aarch64 with AAVMF). */
  arch?: GuestArch;
  /** Whole-scenario limit in seconds (default 3600; each boot also has its own timeout). */
  timeoutSec?: number;
  run(ctx: ScenarioContext): Promise<void>;
}

export function defineScenario(s: Scenario): Scenario {
  return s;
}

/** The same scenario on another Debian release's base image (a file `NAME-trixie.ts` exports it). */
export function onGuest(guest: GuestSuite, s: Scenario): Scenario {
  const release = { bookworm: "Debian 12", trixie: "Debian 13 (kernel 6.12, systemd 257, dracut 106)" }[
    guest
  ];
  return { ...s, guest, description: `${release}: ${s.description}` };
}

/** Debian releases the base image is built from (vm-test/lib/build-base-image.sh SUITE). */
export type GuestSuite = "bookworm" | "trixie";

/** Debian architectures of the base image (build-base-image.sh SUITE ARCH) and of the VM that boots it. */
export type GuestArch = "amd64" | "arm64";

export interface BaseImage {
  suite: GuestSuite;
  arch: GuestArch;
  dir: string;
  /** Raw GPT disk: ESP + ext4 "root" (read-only: copy it with ctx.sourceDisk()). */
  disk: string;
  kernel: string;
  initrd: string;
  kver: string;
}

export interface ConvertOptions {
  /**
   * Input disk (default: a fresh copy of the base image; then the result is cached for this run,
   * and a later convert with the same options gets a copy of it instead of converting again).
   */
  source?: string;
  /** fde.toml and (optional) global.toml contents. */
  fde: string;
  global?: string;
  /** rootfs key: a string (passed with --rootfs-key-file) or null for --rootfs-no-encryption. */
  rootfsKey: string | null;
  uki?: boolean;
  /** Further convert flags. */
  args?: string[];
  /** Output name inside the scenario's out dir (default "disk.raw"). */
  out?: string;
}

export interface BootOptions {
  /** Names the boot in logs: out/SCENARIO/serial-LABEL.log. */
  label: string;
  /** Boot through OVMF firmware (shim+GRUB or UKI on the ESP) instead of direct kernel boot. */
  uefi?: boolean;
  /**
   * Direct boots only: boot to cptest-quick.target (basic.target + the reporter) instead of the
   * guest's default multi-user.target; faster when no multi-user service matters.
   */
  quick?: boolean;
  /** Kernel arguments added to the harness default (direct boots only). */
  append?: string[];
  /** Replaces the whole kernel command line (direct boots only). */
  cmdline?: string;
  /** Files replaced in the initrd for this boot (direct boots only). */
  initrdFiles?: Record<string, string>;
  timeoutSec?: number;
  killOn?: { pattern: RegExp; delayMs?: number };
  network?: boolean;
  /** Guest addresses relayed to host test servers (needs `network`; see QemuBoot.guestForwards). */
  guestForwards?: GuestForward[];
  /** More `-netdev user` options, e.g. another address range (see QemuBoot.userNet). */
  userNet?: string;
  /** The guest's DNS server (host IPv4, port 53) behind QEMU's DNS proxy; see QemuBoot.dnsServer. */
  dnsServer?: string;
  memoryMiB?: number;
  extraQemuArgs?: string[];
}

export interface BootResult {
  label: string;
  end: BootEnd;
  seconds: number;
  serial: string;
  markers: Markers;
  serialLog: string;
}

export interface ScenarioContext {
  name: string;
  /** vm-test/out/SCENARIO (created, emptied at the start). */
  outDir: string;
  /** Repository root and the agent binary (dist/cryptpilot-fde). */
  repo: string;
  agent: string;
  base: BaseImage;
  log(message: string): void;
  /** A copy of the base disk in outDir, with `files` written into its root filesystem first. */
  sourceDisk(opts?: { name?: string; files?: Record<string, string> }): Promise<string>;
  /** Runs `cryptpilot-fde convert`; returns the converted disk's path. */
  convert(opts: ConvertOptions): Promise<string>;
  /** Boots the disk once (QEMU TCG); returns when the guest powered off, was killed or timed out. */
  boot(disk: string, opts: BootOptions): Promise<BootResult>;
  /** Assertions: a failed one ends the scenario with `message` (and the serial log's path). */
  check(condition: boolean, message: string, boot?: BootResult): void;
  /** Asserts the guest reached multi-user.target and reported (CPTEST:end). */
  expectReported(boot: BootResult): void;
  /** Asserts the boot stopped before the real root: no report, and `pattern` on the console. */
  expectStopped(boot: BootResult, pattern: RegExp, what: string): void;
}

export class ScenarioFailure extends Error {}

/** One QEMU boot of a test disk: TCG (see shared spec: KVM here is slower), serial console to a file. */
import { appendFileSync, copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { Markers } from "./markers.ts";
import type { GuestArch } from "./scenario.ts";

export interface QemuBoot {
  /** Who boots it (the scenario): killQemu(owner) stops only that runner's VMs. */
  owner: string;
  disk: string;
  /** The machine: amd64 (PC, OVMF) or arm64 (virt, AAVMF); default amd64. */
  arch?: GuestArch;
  /** Serial log of this boot. */
  serialLog: string;
  /** Direct-kernel boot; without it the firmware (OVMF/AAVMF) boots the disk's ESP (shim+GRUB or UKI). */
  direct?: { kernel: string; initrd: string; cmdline: string };
  memoryMiB: number;
  cpus: number;
  timeoutSec: number;
  /** User-mode network (the guest reaches the host's 127.0.0.1:PORT as 10.0.2.2:PORT). */
  network: boolean;
  /** With `network`: guest TCP connections to these addresses are relayed to host ports. */
  guestForwards?: GuestForward[];
  /**
   * With `network`: more `-netdev user` options, e.g. `net=100.64.0.0/10,host=100.64.0.2` for
   * another address range than 10.0.2.0/24 (a guestfwd address must lie inside the range).
   */
  userNet?: string;
  /**
   * Where the guest's DNS queries go (an IPv4 address on the host, port 53). The DHCP-advertised
   * server 10.0.2.3 is libslirp's proxy, which forwards to the first nameserver of QEMU's own
   * /etc/resolv.conf (slirp.c get_dns_addr_resolv_conf); QEMU runs in a private mount namespace
   * whose /etc/resolv.conf names this address. No guest-side setting changes.
   */
  dnsServer?: string;
  /** Kill the VM `delayMs` after the serial console first matches `pattern`. */
  killOn?: { pattern: RegExp; delayMs: number };
  extraArgs: string[];
}

export type BootEnd = "poweroff" | "timeout" | "killed";

/**
 * A guest address (e.g. a cloud's link-local metadata service, 100.100.100.200:80) served by a test
 * server on the host: QEMU's guestfwd runs one socat relay per guest connection.
 */
export interface GuestForward {
  address: string;
  port: number;
  hostPort: number;
}

/**
 * A user network that holds the cloud metadata address 100.100.100.200 (in 100.64.0.0/10), with the
 * host at 100.64.0.2: QEMU forwards only in-network addresses (guestfwd), and there an address
 * nothing forwards is unanswered, as on a VM without a metadata service, whatever the build host's
 * own network would do with it.
 */
export const METADATA_USER_NET = {
  host: "100.64.0.2",
  options: "net=100.64.0.0/10,host=100.64.0.2",
} as const;

export interface BootOutcome {
  end: BootEnd;
  seconds: number;
  serial: string;
  markers: Markers;
}

const OVMF = "/usr/share/ovmf/OVMF.fd";

/**
 * arm64 firmware (Debian's qemu-efi-aarch64): the code, and the variable store each boot gets a
 * copy of (pflash unit 1 must be writable).
 */
export const AAVMF = { code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd" };

/**
 * The QEMU machine per architecture. arm64: the virt board with a Cortex-A72. -cpu max would add
 * pointer authentication, whose QARMA emulation makes every TCG function call dearer; the guest
 * needs nothing beyond ARMv8.0 (Debian's arm64 baseline).
 */
const MACHINE: Record<GuestArch, string[]> = {
  amd64: ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"],
  arm64: ["qemu-system-aarch64", "-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a72"],
};

/** Serial console device of each machine's first UART (8250 on the PC, PL011 on virt). */
export const SERIAL_CONSOLE: Record<GuestArch, string> = { amd64: "ttyS0", arm64: "ttyAMA0" };

export function qemuArgs(b: QemuBoot): string[] {
  const arch = b.arch ?? "amd64";
  const args = [
    ...MACHINE[arch],
    "-smp",
    String(b.cpus),
    "-m",
    String(b.memoryMiB),
    "-nodefaults",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    `file:${b.serialLog}`,
    "-drive",
    `file=${b.disk},format=raw,if=virtio,cache=unsafe,discard=unmap`,
    "-object",
    "rng-random,filename=/dev/urandom,id=rng0",
    "-device",
    "virtio-rng-pci,rng=rng0",
  ];
  if (b.direct) {
    args.push("-kernel", b.direct.kernel, "-initrd", b.direct.initrd, "-append", b.direct.cmdline);
  } else if (arch === "arm64") {
    args.push("-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${AAVMF.code}`);
    args.push("-drive", `if=pflash,format=raw,unit=1,file=${varsOf(b)}`);
  } else {
    args.push("-bios", OVMF);
  }
  if (b.network) {
    const forwards = (b.guestForwards ?? []).map(
      (f) => `,guestfwd=tcp:${f.address}:${f.port}-cmd:socat - TCP:127.0.0.1:${f.hostPort}`,
    );
    const net = b.userNet ? `,${b.userNet}` : "";
    args.push("-netdev", `user,id=n0${net}${forwards.join("")}`, "-device", "virtio-net-pci,netdev=n0");
  }
  args.push(...b.extraArgs);
  if (!b.dnsServer) return args;
  // unshare's new mount namespace is private: the bind mount never reaches the host.
  const bind = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';
  return ["unshare", "--mount", "--", "sh", "-c", bind, resolvConfOf(b), ...args];
}

/** This boot's copy of the AAVMF variable store. */
const varsOf = (b: QemuBoot) => `${b.serialLog}.vars.fd`;

/** The resolv.conf QEMU sees when `dnsServer` is set. */
const resolvConfOf = (b: QemuBoot) => `${b.serialLog}.resolv.conf`;

/** QEMU processes of this runner by owner, killed when it ends early (scenario timeout, Ctrl-C). */
const running = new Set<{ owner: string; proc: { kill(signal?: number | NodeJS.Signals): void } }>();

/** Kills the VMs of one owner, or all of this runner's when no owner is given. */
export function killQemu(owner?: string): void {
  for (const vm of running) if (owner === undefined || vm.owner === owner) vm.proc.kill("SIGKILL");
}

/** Boots and waits for power-off, the timeout, or the kill pattern. Never throws for guest failures. */
export async function runQemu(b: QemuBoot): Promise<BootOutcome> {
  writeFileSync(b.serialLog, "");
  if (b.arch === "arm64" && !b.direct) copyFileSync(AAVMF.vars, varsOf(b));
  if (b.dnsServer) writeFileSync(resolvConfOf(b), `nameserver ${b.dnsServer}\n`);
  const started = Date.now();
  const proc = Bun.spawn(qemuArgs(b), { stdout: "pipe", stderr: "pipe" });
  const vm = { owner: b.owner, proc };
  running.add(vm);
  const stderr = new Response(proc.stderr).text();
  let end: BootEnd | undefined;
  let killAt: number | undefined;
  let poweroffDeadline: number | undefined;
  const exited = proc.exited.then(() => {
    end ??= "poweroff";
  });
  while (end === undefined) {
    await Promise.race([exited, Bun.sleep(500)]);
    if (end !== undefined) break;
    const now = Date.now();
    const serial = existsSync(b.serialLog) ? readFileSync(b.serialLog, "latin1") : "";
    if (b.killOn && killAt === undefined && b.killOn.pattern.test(serial)) killAt = now + b.killOn.delayMs;
    // The reporter powers off right after its last marker; a guest that hangs on the way down
    // still counts as a finished boot.
    if (poweroffDeadline === undefined && serial.includes("CPTEST:end")) poweroffDeadline = now + 60_000;
    if (killAt !== undefined && now >= killAt) end = "killed";
    else if (poweroffDeadline !== undefined && now >= poweroffDeadline) end = "poweroff";
    else if (now - started > b.timeoutSec * 1000) end = "timeout";
    if (end !== undefined) proc.kill("SIGKILL");
  }
  const code = await proc.exited;
  running.delete(vm);
  const err = (await stderr).trim();
  if (end === "poweroff" && code !== 0 && poweroffDeadline === undefined) {
    throw new Error(`qemu exited ${code}: ${err}`);
  }
  if (err) appendFileSync(b.serialLog, `\n[harness] qemu stderr: ${err}\n`);
  const serial = readFileSync(b.serialLog, "latin1");
  return { end, seconds: (Date.now() - started) / 1000, serial, markers: new Markers(serial) };
}

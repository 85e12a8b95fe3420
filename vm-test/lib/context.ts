/** The ScenarioContext the runner hands to each scenario. */

import { createHash } from "node:crypto";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { addFilesToRoot, copyImage, extractKernel, initrdWithFiles } from "./disk.ts";
import { withLock } from "./lock.ts";
import { runQemu, SERIAL_CONSOLE } from "./qemu.ts";
import type {
  BaseImage,
  BootOptions,
  BootResult,
  ConvertOptions,
  GuestArch,
  ScenarioContext,
} from "./scenario.ts";
import { ScenarioFailure } from "./scenario.ts";

/**
 * Test-only kernel arguments (vm-test/guest/kernel-cmdline, also the base image's
 * /etc/kernel/cmdline that convert puts on the boot entries it writes): the serial console, and
 * speed-ups for TCG. -cpu max offers SVM, so udev loads kvm/kvm_amd in the guest; under TCG that
 * module set-up has stalled both vCPUs for 45 s (soft lockups). mitigations=off and init_on_alloc=0:
 * retpolines and zeroing every allocated page cost a TCG guest dearly, and a throw-away test guest
 * gains nothing from them. Nothing here changes what a failed boot does: that is the product's
 * initrd (rd.shell=0, the stage's own power-off), as users get it.
 */
export const TEST_CMDLINE = readFileSync(
  join(import.meta.dir, "..", "guest", "kernel-cmdline"),
  "utf8",
).trim();

/** TEST_CMDLINE with the serial console of ARCH's machine (build-base-image.sh does the same). */
export function testCmdline(arch: GuestArch): string {
  return TEST_CMDLINE.replace("console=ttyS0", `console=${SERIAL_CONSOLE[arch]}`);
}

/**
 * VMs booted at once on this host (CPTEST_VMS, default 2). Two at once gained only 1.1-1.2x over
 * one on 2 cores (each boot gets 1.5-2x slower); the gain is mostly one scenario's host-side
 * convert overlapping the other's boot.
 */
export const VM_SLOTS = Math.max(1, Math.floor(Number(process.env.CPTEST_VMS ?? 2)) || 1);

/** What dracut's and systemd's emergency/rescue shells print when they offer themselves. */
const SHELL_PROMPT =
  /Entering emergency mode|Press Enter for maintenance|Give root password|Emergency Shell|Entering rescue mode|dracut:\/#/;

/** The product needs only root=/dev/mapper/rootfs on the kernel command line. */
export const ROOT_CMDLINE = "root=/dev/mapper/rootfs";

/** Conversions of this run by options: scenarios with the same layout share one. */
const convertCache = new Map<string, Promise<string>>();

/** Per runner process: other runners on the host keep their own. */
function convertCacheDir(repo: string): string {
  return join(repo, "vm-test", "out", `.convert-cache-${process.pid}`);
}

export function clearConvertCache(repo: string): void {
  rmSync(convertCacheDir(repo), { recursive: true, force: true });
}

export function createContext(name: string, repo: string, base: BaseImage): ScenarioContext {
  const outDir = join(repo, "vm-test", "out", name);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const serialLog = join(outDir, "serial.log");
  const agent = join(repo, "dist", "cryptpilot-fde");
  let boots = 0;

  const log = (message: string) => {
    const line = `  [${name}] ${message}`;
    console.log(line);
    appendFileSync(join(outDir, "harness.log"), `${line}\n`);
  };

  const fail = (message: string, boot?: BootResult): never => {
    throw new ScenarioFailure(boot ? `${message} (boot "${boot.label}", see ${boot.serialLog})` : message);
  };

  /** Runs `cryptpilot-fde convert` from `source` to `out`; its output goes to convert-*.log. */
  const convertTo = async (opts: ConvertOptions, source: string, out: string) => {
    if (!existsSync(agent)) fail(`${agent} is missing: run 'make build' first`);
    mkdirSync(dirname(out), { recursive: true });
    const cfg = mkdtempSync(join(outDir, "config-"));
    try {
      writeFileSync(join(cfg, "fde.toml"), opts.fde);
      if (opts.global !== undefined) writeFileSync(join(cfg, "global.toml"), opts.global);
      // CPTEST_CONVERT_FROM_SOURCE=1 runs convert from agent/src (quicker while working on it; the
      // guest still gets dist/cryptpilot-fde).
      const cli = process.env.CPTEST_CONVERT_FROM_SOURCE
        ? [join(repo, "node_modules", ".bin", "bun"), join(repo, "agent", "src", "main.ts")]
        : [agent];
      const argv = [...cli, "convert", "--in", source, "--out", out, "-c", cfg, ...(opts.args ?? [])];
      if (opts.rootfsKey === null) {
        argv.push("--rootfs-no-encryption");
      } else {
        const keyFile = join(cfg, "rootfs.key");
        writeFileSync(keyFile, opts.rootfsKey, { mode: 0o600 });
        argv.push("--rootfs-key-file", keyFile);
      }
      if (opts.uki) argv.push("--uki");
      log(`convert: ${argv.slice(cli.length).join(" ").replaceAll(`${outDir}/`, "")}`);
      const started = Date.now();
      const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      writeFileSync(join(outDir, `convert-${basename(out)}.log`), `${stdout}${stderr}`);
      if (code !== 0)
        fail(`convert exited ${code}:\n${`${stdout}${stderr}`.trim().split("\n").slice(-15).join("\n")}`);
      log(`convert done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    } finally {
      rmSync(cfg, { recursive: true, force: true });
    }
  };

  const ctx: ScenarioContext = {
    name,
    outDir,
    repo,
    agent,
    base,
    log,

    async sourceDisk(opts = {}) {
      const disk = join(outDir, opts.name ?? "source.raw");
      await copyImage(base.disk, disk);
      if (opts.files) await addFilesToRoot(disk, opts.files);
      return disk;
    },

    async convert(opts: ConvertOptions) {
      const out = join(outDir, opts.out ?? "disk.raw");
      if (opts.source !== undefined) {
        await convertTo(opts, opts.source, out);
        return out;
      }
      const key = createHash("sha256")
        .update(
          JSON.stringify({
            ...opts,
            out: undefined,
            base: base.dir,
            agent: statSync(agent, { throwIfNoEntry: false })?.mtimeMs,
          }),
        )
        .digest("hex")
        .slice(0, 16);
      let pending = convertCache.get(key);
      if (pending) {
        log("reusing this run's conversion with the same options");
      } else {
        const cached = join(convertCacheDir(repo), `${key}.raw`);
        pending = (async () => {
          const source = await ctx.sourceDisk();
          try {
            await convertTo(opts, source, cached);
          } finally {
            rmSync(source, { force: true });
          }
          return cached;
        })();
        convertCache.set(key, pending);
        // A failed conversion is not cached: the next scenario tries (and reports) it again.
        pending.catch(() => convertCache.delete(key));
      }
      await copyImage(await pending, out);
      return out;
    },

    async boot(disk: string, opts: BootOptions) {
      boots++;
      const label = opts.label;
      const log1 = join(outDir, `serial-${boots}-${label}.log`);
      let direct: { kernel: string; initrd: string; cmdline: string } | undefined;
      if (!opts.uefi) {
        const kdir = join(outDir, "kernel");
        const { kernel, initrd: original } = await extractKernel(disk, kdir);
        let initrd = original;
        if (opts.initrdFiles) {
          initrd = join(kdir, `initrd-${label}.img`);
          await initrdWithFiles(original, opts.initrdFiles, initrd);
        }
        const quick = opts.quick ? ["systemd.unit=cptest-quick.target"] : [];
        const cmdline =
          opts.cmdline ?? [ROOT_CMDLINE, testCmdline(base.arch), ...quick, ...(opts.append ?? [])].join(" ");
        direct = { kernel, initrd, cmdline };
      }
      const firmware = base.arch === "arm64" ? "AAVMF" : "OVMF";
      log(`boot ${boots} "${label}" (${opts.uefi ? `${firmware} firmware` : `direct: ${direct?.cmdline}`})`);
      // At most VM_SLOTS VMs on this host, whoever runs them: more TCG guests than cores make
      // every boot several times slower and push them into their timeouts.
      const lock = join(repo, "vm-test", "cache", ".qemu.lock");
      const outcome = await withLock(
        lock,
        () => log("waiting for another VM boot on this host to finish"),
        () =>
          runQemu({
            owner: name,
            arch: base.arch,
            disk,
            serialLog: log1,
            direct,
            memoryMiB: opts.memoryMiB ?? 2048,
            cpus: 2,
            timeoutSec: opts.timeoutSec ?? 600,
            network: opts.network ?? false,
            guestForwards: opts.guestForwards,
            userNet: opts.userNet,
            dnsServer: opts.dnsServer,
            killOn: opts.killOn
              ? { pattern: opts.killOn.pattern, delayMs: opts.killOn.delayMs ?? 0 }
              : undefined,
            extraArgs: opts.extraQemuArgs ?? [],
          }),
        VM_SLOTS,
      );
      appendFileSync(serialLog, `\n===== boot ${boots} "${label}" =====\n${readFileSync(log1, "latin1")}`);
      log(`boot ${boots} "${label}" ended (${outcome.end}) after ${outcome.seconds.toFixed(0)} s`);
      return { label, serialLog: log1, ...outcome };
    },

    check(condition: boolean, message: string, boot?: BootResult) {
      if (!condition) fail(message, boot);
    },

    expectReported(boot: BootResult) {
      if (boot.markers.complete) return;
      // The agent's failure paragraph says more than the last console lines.
      const stage = boot.serial.match(
        /cryptpilot-fde\[\d+\]: (cryptpilot-fde \S+ failed at step [^\n]*)/,
      )?.[1];
      if (stage) fail(`the boot stopped in the initrd: ${stage.trim()}`, boot);
      const tail = boot.serial.trim().split("\n").slice(-12).join("\n");
      fail(
        `the guest did not reach multi-user.target and report (${boot.end}); console ends with:\n${tail}`,
        boot,
      );
    },

    expectStopped(boot: BootResult, pattern: RegExp, what: string) {
      ctx.check(
        !boot.markers.has("begin"),
        `the boot should have stopped (${what}) but reached the real root`,
        boot,
      );
      ctx.check(
        !/Switching root/.test(boot.serial),
        `the boot should have stopped (${what}) but switched root`,
        boot,
      );
      ctx.check(pattern.test(boot.serial), `the console does not show ${what} (${pattern})`, boot);
      // Fail closed (issue #14): the stage itself closes what it opened and powers off, by the
      // settings the product's initrd carries; no shell is ever offered on the host's console.
      const shell = SHELL_PROMPT.exec(boot.serial)?.[0];
      ctx.check(!shell, `the failed boot offered a shell on the console ("${shell}")`, boot);
      ctx.check(
        /there is no shell/.test(boot.serial) && /cryptpilot-fde: powering off now/.test(boot.serial),
        "the failed stage did not announce its power-off (boot/failure.ts: 'there is no shell', 'powering off now')",
        boot,
      );
      ctx.check(boot.end === "poweroff", `the stopped boot should power off, got ${boot.end}`, boot);
    },
  };
  return ctx;
}

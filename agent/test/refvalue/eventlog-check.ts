/**
 * For the VM scenarios (vm-test/scenarios/refvalue-*.ts): compare what show-reference-value
 * predicted for a disk with the TCG event log the firmware, shim and GRUB wrote while booting it
 * under OVMF with a swtpm TPM. Returns the problems found (empty = every prediction matched).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BootResult, ScenarioContext } from "../../../vm-test/lib/scenario.ts";
import { openImage } from "../../src/disk/image/open.ts";
import { diskLayout } from "../../src/refvalue/disk-layout.ts";
import {
  EV_EFI_BOOT_SERVICES_APPLICATION,
  EV_IPL,
  type EventLog,
  eventText,
  imageLoadFilePaths,
  parseEventLog,
} from "../../src/refvalue/eventlog.ts";

export type Predicted = Record<string, string[]>;

/** Guest check script: the event log, and show-reference-value run on the guest itself. */
export const GUEST_CHECK = `#!/bin/bash
f=/sys/kernel/security/tpm0/binary_bios_measurements
if [ -r "$f" ]; then echo "eventlog=$(base64 -w0 "$f")"; else echo "eventlog=missing"; fi
# The test image's fstab mounts neither /boot nor the ESP; a real system would.
boot=$(lsblk -rno PATH,PARTLABEL | awk '$2 == "boot" {print $1; exit}')
esp=$(lsblk -rno PATH,PARTTYPE | awk '$2 == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" {print $1; exit}')
if [ -n "$boot" ]; then mountpoint -q /boot || mount "$boot" /boot; fi
mkdir -p /boot/efi && { mountpoint -q /boot/efi || mount -o ro "$esp" /boot/efi; }
out=$(cryptpilot-fde show-reference-value --hash-algo sha256 --hash-algo sha384 2>/tmp/refvalue.err)
echo "refvalue=$(printf '%s' "$out" | base64 -w0)"
echo "refvalue-error=$(tr '\\n' ' ' </tmp/refvalue.err | head -c 800)"
`;

const LABELS: Record<string, string> = { "SHA-256": "SHA-256", "SHA-384": "SHA-384" };

export function compareWithEventLog(predicted: Predicted, log: EventLog, mode: "grub" | "uki"): string[] {
  const problems: string[] = [];
  const apps = log.events.filter((e) => e.type === EV_EFI_BOOT_SERVICES_APPLICATION);
  const ipl = log.events.filter((e) => e.type === EV_IPL);
  const banks = Object.keys(LABELS).filter((l) => log.events.some((e) => e.digests[l] !== undefined));
  if (banks.length === 0) problems.push("the event log has neither SHA-256 nor SHA-384 digests");
  const describe = (e: (typeof log.events)[number]) =>
    e.type === EV_IPL ? `"${eventText(e).slice(0, 80)}"` : imageLoadFilePaths(e).join(" ") || "(no path)";
  for (const label of banks) {
    const want = (key: string) => predicted[`measurement.${key}.${label}`] ?? [];
    const expectAll = (key: string, events: typeof log.events, what: string) => {
      if (want(key).length === 0) problems.push(`no measurement.${key}.${label} predicted`);
      for (const digest of want(key)) {
        if (!events.some((e) => e.digests[label] === digest)) {
          problems.push(
            `measurement.${key}.${label} ${digest} is not the digest of any ${what}; those are: ${events.map((e) => `${describe(e)} ${e.digests[label]}`).join("; ")}`,
          );
        }
      }
    };
    if (mode === "uki") {
      expectAll(
        "uki",
        apps.filter((e) => e.index === 4),
        "PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION",
      );
      continue;
    }
    const pcr4 = apps.filter((e) => e.index === 4);
    // The firmware loads shim first (from \EFI\BOOT\BOOTX64.EFI on a VM without boot entries), then shim loads GRUB.
    expectAll("shim", pcr4.slice(0, 1), "first PCR 4 EV_EFI_BOOT_SERVICES_APPLICATION (shim)");
    expectAll(
      "grub",
      pcr4.filter((e) => imageLoadFilePaths(e).some((p) => /grubx64\.efi$/i.test(p))),
      "GRUB load event",
    );
    const pcr9 = ipl.filter((e) => e.index === 9);
    expectAll(
      "kernel",
      pcr9.filter((e) => /vmlinuz/.test(eventText(e))),
      "PCR 9 EV_IPL kernel event",
    );
    expectAll(
      "initrd",
      pcr9.filter((e) => /initrd/.test(eventText(e))),
      "PCR 9 EV_IPL initrd event",
    );
    // GRUB measures the command line once; it must be one of the predicted candidates.
    const cmdline = ipl.filter(
      (e) => e.index === 8 && /^(kernel_cmdline: |grub_kernel_cmdline )/.test(eventText(e)),
    );
    if (cmdline.length !== 1) {
      problems.push(`expected one PCR 8 kernel command-line event, found ${cmdline.length}`);
    } else {
      const text = eventText(cmdline[0]!).replace(/^(kernel_cmdline: |grub_kernel_cmdline )/, "");
      const strings = (predicted.kernel_cmdline ?? []).map((s) => s.replace(/^grub_kernel_cmdline /, ""));
      if (!strings.includes(text))
        problems.push(`GRUB measured the command line "${text}", not one of ${JSON.stringify(strings)}`);
      if (!want("kernel_cmdline").includes(cmdline[0]!.digests[label]!)) {
        problems.push(
          `the command-line event's ${label} digest ${cmdline[0]!.digests[label]} is not predicted`,
        );
      }
    }
  }
  return problems;
}

/**
 * The whole VM check for one boot mode: convert the base image (with `linuxefi`, which Debian's
 * GRUB needs to hand the kernel the event log with Secure Boot off), predict with
 * show-reference-value on the raw disk and a compressed qcow2 copy, boot under OVMF with a swtpm
 * TPM (SHA-256 and SHA-384 banks), and compare with the log read in the guest; the guest's own
 * show-reference-value (running-system mode) must print the same JSON.
 */
export async function eventLogScenario(ctx: ScenarioContext, mode: "grub" | "uki"): Promise<void> {
  const base = openImage(ctx.base.disk);
  let grubCfg: string;
  try {
    grubCfg = new TextDecoder().decode(diskLayout(base).boot!.rootFs.readFile("/boot/grub/grub.cfg"));
  } finally {
    base.close();
  }
  const files: Record<string, string> = { "/etc/cptest/checks.d/eventlog.sh": GUEST_CHECK };
  if (mode === "grub") {
    files["/boot/grub/grub.cfg"] = grubCfg
      .replace(/^(\s*)linux(\s)/gm, "$1linuxefi$2")
      .replace(/^(\s*)initrd(\s)/gm, "$1initrdefi$2");
  }
  const source = await ctx.sourceDisk({ files });
  const disk = await ctx.convert({
    source,
    // The test guest's key helper (vm-test/guest/cptest-key); the key does not matter here.
    fde: '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "/usr/local/bin/cptest-key"\nargs = ["delta"]\n',
    rootfsKey: null,
    uki: mode === "uki",
  });
  const predict = (image: string) => {
    const p = Bun.spawnSync(
      [ctx.agent, "show-reference-value", "--disk", image, "--hash-algo", "sha256", "--hash-algo", "sha384"],
      {
        stderr: "pipe",
      },
    );
    ctx.check(p.exitCode === 0, `show-reference-value --disk ${image} failed: ${p.stderr.toString()}`);
    return p.stdout.toString();
  };
  const rawJson = predict(disk);
  const qcow = join(ctx.outDir, "disk.qcow2");
  const conv = Bun.spawnSync(["qemu-img", "convert", "-c", "-O", "qcow2", disk, qcow], { stderr: "pipe" });
  ctx.check(conv.exitCode === 0, `qemu-img convert failed: ${conv.stderr.toString()}`);
  ctx.check(
    predict(qcow) === rawJson,
    "show-reference-value gives different values for the raw disk and its qcow2 copy",
  );
  const predicted = JSON.parse(rawJson) as Predicted;
  ctx.log(`predicted: ${Object.keys(predicted).join(", ")}`);

  const tpmDir = join(ctx.outDir, "tpm");
  mkdirSync(tpmDir, { recursive: true });
  const setup = Bun.spawnSync(
    ["swtpm_setup", "--tpm2", "--tpmstate", tpmDir, "--pcr-banks", "sha256,sha384", "--config", "/dev/null"],
    {
      stderr: "pipe",
      stdout: "pipe",
    },
  );
  ctx.check(setup.exitCode === 0, `swtpm_setup failed: ${setup.stderr.toString()}`);
  const sock = join(tpmDir, "swtpm.sock");
  const swtpm = Bun.spawn(
    [
      "swtpm",
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${tpmDir}`,
      "--ctrl",
      `type=unixio,path=${sock}`,
      "--terminate",
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  let boot: BootResult;
  try {
    for (let i = 0; i < 50 && !existsSync(sock); i++) await Bun.sleep(100);
    boot = await ctx.boot(disk, {
      label: `${mode}-uefi-tpm`,
      uefi: true,
      timeoutSec: 900,
      extraQemuArgs: [
        "-chardev",
        `socket,id=chrtpm,path=${sock}`,
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        "tpm-tis,tpmdev=tpm0",
      ],
    });
  } finally {
    swtpm.kill();
  }
  ctx.expectReported(boot);
  const b64 = boot.markers.get("check:eventlog");
  ctx.check(b64 !== undefined && b64 !== "missing", "the guest has no TPM event log", boot);
  const log = parseEventLog(Buffer.from(b64!, "base64"), "the guest's binary_bios_measurements");
  writeFileSync(join(ctx.outDir, "binary_bios_measurements"), Buffer.from(b64!, "base64"));
  ctx.log(
    `event log: ${log.events.length} events, banks ${log.algorithms.map((a) => a.id.toString(16)).join(",")}`,
  );
  const problems = compareWithEventLog(predicted, log, mode);
  ctx.check(
    problems.length === 0,
    `predicted values missing from the event log:\n${problems.join("\n")}`,
    boot,
  );
  const guestJson = Buffer.from(boot.markers.get("check:refvalue") ?? "", "base64").toString();
  ctx.check(
    guestJson.trim() === rawJson.trim(),
    `show-reference-value on the running guest differs from --disk (guest error: ${boot.markers.get("check:refvalue-error")}):\n${guestJson}`,
    boot,
  );
}

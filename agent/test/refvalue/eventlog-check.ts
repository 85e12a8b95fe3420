/**
 * For the VM scenarios (vm-test/scenarios/refvalue-*.ts): compare what show-reference-value
 * predicted for a disk with the TCG event log the firmware, shim and GRUB wrote while booting it
 * under OVMF with a swtpm TPM. Returns the problems found (empty = every prediction matched).
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BootResult, ScenarioContext } from "../../../vm-test/lib/scenario.ts";
import { withSwtpm } from "../../../vm-test/lib/swtpm.ts";
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
 * Files for the source disk of an event-log check: the guest check script, and for GRUB a
 * grub.cfg with `linuxefi`/`initrdefi`, which Debian's GRUB needs to hand the kernel the event log
 * with Secure Boot off (with Secure Boot on it behaves so anyway).
 */
export function eventLogSourceFiles(ctx: ScenarioContext, mode: "grub" | "uki"): Record<string, string> {
  const files: Record<string, string> = { "/etc/cptest/checks.d/eventlog.sh": GUEST_CHECK };
  if (mode === "grub") {
    const base = openImage(ctx.base.disk);
    try {
      const grubCfg = new TextDecoder().decode(diskLayout(base).boot!.rootFs.readFile("/boot/grub/grub.cfg"));
      files["/boot/grub/grub.cfg"] = grubCfg
        .replace(/^(\s*)linux(\s)/gm, "$1linuxefi$2")
        .replace(/^(\s*)initrd(\s)/gm, "$1initrdefi$2");
    } finally {
      base.close();
    }
  }
  return files;
}

export interface Prediction {
  /** show-reference-value's JSON output for the disk. */
  json: string;
  values: Predicted;
}

/** show-reference-value on the converted disk, which must give the same for a compressed qcow2 copy. */
export function predictReferenceValues(ctx: ScenarioContext, disk: string): Prediction {
  const predict = (image: string) => {
    const p = Bun.spawnSync(
      [ctx.agent, "show-reference-value", "--disk", image, "--hash-algo", "sha256", "--hash-algo", "sha384"],
      { stderr: "pipe" },
    );
    ctx.check(p.exitCode === 0, `show-reference-value --disk ${image} failed: ${p.stderr.toString()}`);
    return p.stdout.toString();
  };
  const json = predict(disk);
  const qcow = join(ctx.outDir, "disk.qcow2");
  const conv = Bun.spawnSync(["qemu-img", "convert", "-c", "-O", "qcow2", disk, qcow], { stderr: "pipe" });
  ctx.check(conv.exitCode === 0, `qemu-img convert failed: ${conv.stderr.toString()}`);
  ctx.check(
    predict(qcow) === json,
    "show-reference-value gives different values for the raw disk and its qcow2 copy",
  );
  rmSync(qcow, { force: true });
  const values = JSON.parse(json) as Predicted;
  ctx.log(`predicted: ${Object.keys(values).join(", ")}`);
  return { json, values };
}

/** The swtpm for a measured UEFI boot: SHA-256 and SHA-384 banks, started up by OVMF. */
export function withMeasuringTpm<T>(
  ctx: ScenarioContext,
  fn: (qemuArgs: string[]) => Promise<T>,
): Promise<T> {
  return withSwtpm(join(ctx.outDir, "tpm"), join(ctx.outDir, "swtpm.sock"), (tpm) => fn(tpm.qemuArgs), {
    pcrBanks: "sha256,sha384",
    firmwareStartup: true,
  });
}

/**
 * The guest's TPM event log (from a boot of a disk with eventLogSourceFiles) holds every predicted
 * value, and the guest's own show-reference-value (running-system mode) prints the same JSON.
 */
export function checkEventLog(
  ctx: ScenarioContext,
  boot: BootResult,
  prediction: Prediction,
  mode: "grub" | "uki",
): void {
  const b64 = boot.markers.get("check:eventlog");
  ctx.check(b64 !== undefined && b64 !== "missing", "the guest has no TPM event log", boot);
  const log = parseEventLog(Buffer.from(b64!, "base64"), "the guest's binary_bios_measurements");
  writeFileSync(join(ctx.outDir, "binary_bios_measurements"), Buffer.from(b64!, "base64"));
  ctx.log(
    `event log: ${log.events.length} events, banks ${log.algorithms.map((a) => a.id.toString(16)).join(",")}`,
  );
  const problems = compareWithEventLog(prediction.values, log, mode);
  ctx.check(
    problems.length === 0,
    `predicted values missing from the event log:\n${problems.join("\n")}`,
    boot,
  );
  const guestJson = Buffer.from(boot.markers.get("check:refvalue") ?? "", "base64").toString();
  ctx.check(
    guestJson.trim() === prediction.json.trim(),
    `show-reference-value on the running guest differs from --disk (guest error: ${boot.markers.get("check:refvalue-error")}):\n${guestJson}`,
    boot,
  );
}

/**
 * The whole VM check for one boot mode: convert the base image, predict with
 * show-reference-value, boot under OVMF with a swtpm TPM and compare with the guest's event log.
 * (snapshot-disk does the GRUB check on its own disk: see vm-test/scenarios/snapshot-disk.ts.)
 */
export async function eventLogScenario(ctx: ScenarioContext, mode: "grub" | "uki"): Promise<void> {
  const source = await ctx.sourceDisk({ files: eventLogSourceFiles(ctx, mode) });
  const disk = await ctx.convert({
    source,
    // The test guest's key helper (vm-test/guest/cptest-key); the key does not matter here.
    fde: '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "/usr/local/bin/cptest-key"\nargs = ["delta"]\n',
    rootfsKey: null,
    uki: mode === "uki",
  });
  const prediction = predictReferenceValues(ctx, disk);
  const boot = await withMeasuringTpm(ctx, (extraQemuArgs) =>
    ctx.boot(disk, { label: `${mode}-uefi-tpm`, uefi: true, timeoutSec: 900, extraQemuArgs }),
  );
  ctx.expectReported(boot);
  checkEventLog(ctx, boot, prediction, mode);
}

/**
 * For the VM scenarios (vm-test/scenarios/refvalue-*.ts, snapshot-disk.ts): compare what
 * show-reference-value predicted for a disk with the TCG event log the firmware, shim and GRUB
 * wrote while booting it under OVMF with a swtpm TPM (the comparison itself:
 * agent/testkit/eventlog.ts).
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openImage } from "../../agent/src/disk/image/open.ts";
import { diskLayout } from "../../agent/src/refvalue/disk-layout.ts";
import { parseEventLog } from "../../agent/src/refvalue/eventlog.ts";
import { compareWithEventLog, type Predicted } from "../../agent/testkit/eventlog.ts";
import { withSwtpm } from "../../agent/testkit/swtpm.ts";
import type { BootResult, ScenarioContext } from "./scenario.ts";

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

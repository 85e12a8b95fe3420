/**
 * The event-log check of reference values: does the TCG event log the firmware, shim and GRUB
 * wrote while booting a disk hold every digest show-reference-value predicted for it? Used by the
 * VM scenarios (vm-test/lib/eventlog.ts) and its unit test (agent/test/refvalue/eventlog-compare.test.ts).
 * Returns the problems found (empty = every prediction matched).
 */
import {
  EV_EFI_BOOT_SERVICES_APPLICATION,
  EV_IPL,
  type EventLog,
  eventText,
  imageLoadFilePaths,
} from "../src/refvalue/eventlog.ts";

/** show-reference-value's JSON output: `measurement.<key>.<bank>` and `kernel_cmdline` -> candidates. */
export type Predicted = Record<string, string[]>;

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

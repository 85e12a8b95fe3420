import { UsageError } from "../errors.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

export const STAGES = ["initrd-fde-before-sysroot", "initrd-fde-after-sysroot"] as const;

const usage = `cryptpilot-fde boot-service --stage STAGE

Run one initrd boot stage; the systemd units of the cryptpilot dracut module call this.
  initrd-fde-before-sysroot   activate the cryptpilot VG, unlock and verify the rootfs, set up the
                              delta volume and the writable layer: /dev/mapper/rootfs
  initrd-fde-after-sysroot    check /sysroot and (overlayfs backend) mount the overlay over it
Each step prints a numbered line with its duration. A failure prints one paragraph, closes what
the stage opened, waits failure_pause_secs and powers off, reboots or halts ([boot] on_failure in
global.toml; no shell unless on_failure = "shell"). Outside an initrd (no /etc/initrd-release)
nothing is closed or stopped: it only exits non-zero.`;

const command: Command = {
  name: ["boot-service"],
  summary: "Run one initrd boot stage (used by the systemd units in the initrd)",
  usage,
  async run(args, globals) {
    const { values } = parseCommandArgs("boot-service", args, { stage: { type: "string" } });
    const stage = values.stage;
    if (!stage || !(STAGES as readonly string[]).includes(stage)) {
      throw new UsageError(`boot-service: --stage must be one of ${STAGES.join(", ")}`);
    }
    const { runStage } = await import("../boot/index.ts");
    return runStage(stage as (typeof STAGES)[number], globals.configDir);
  },
};

export default command;

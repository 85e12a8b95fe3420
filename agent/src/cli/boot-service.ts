import { AFTER_SYSROOT, BEFORE_SYSROOT, isStage, STAGES } from "../boot/stages.ts";
import { defineCommand } from "./command.ts";

/** Width of the stage-name column in the help text (the longest name and three spaces). */
const NAME_COLUMN = BEFORE_SYSROOT.length + 3;

export default defineCommand({
  usage: "--stage STAGE",
  description: `Run one initrd boot stage; the systemd units of the cryptpilot dracut module call this.
  ${BEFORE_SYSROOT.padEnd(NAME_COLUMN)}activate the cryptpilot VG, unlock and verify the rootfs, set up the
  ${"".padEnd(NAME_COLUMN)}delta volume and the writable layer: /dev/mapper/rootfs
  ${AFTER_SYSROOT.padEnd(NAME_COLUMN)}check /sysroot and (overlayfs backend) mount the overlay over it
Each step prints a numbered line with its duration. A failure prints one paragraph, closes what
the stage opened, waits failure_pause_secs and powers off, reboots or halts ([boot] on_failure in
global.toml; no shell unless on_failure = "shell"). Outside an initrd (no /etc/initrd-release)
nothing is closed or stopped: it only exits non-zero.`,
  flags: {
    stage: { type: "string", value: "STAGE", help: `the stage to run: ${STAGES.join(" or ")}` },
  },
  async run({ values, globals, usageError }) {
    const stage = values.stage;
    if (!stage || !isStage(stage)) {
      throw usageError(`--stage must be one of ${STAGES.join(", ")}`);
    }
    const { runStage } = await import("../boot/index.ts");
    return runStage(stage, globals.configDir);
  },
});

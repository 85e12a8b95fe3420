/** `volume open`: open data volumes by name, or every auto_open volume (boot service). */
import { formatIssue } from "../config/issues.ts";
import { checkVolumes, loadVolume, type VolumeConfig } from "../config/volume.ts";
import { log, print } from "../log.ts";
import { forEachVolume } from "../volume/batch.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: ["VOLUME...", "--auto [--initrd]"],
  description: `Opens each volume as /dev/mapper/VOLUME with the key from its provider, then mounts it (or
enables it as swap) when its file has a [mount] table. otp volumes are formatted with a fresh
random key and makefs on every open; persistent volumes must have been initialised with
'volume init' and are never re-formatted (a wrong key is an error).`,
  flags: {
    auto: {
      type: "boolean",
      help: "open every volume with auto_open = true (what cryptpilot-volumes.service runs at boot). A volume that fails, or a volume file that is invalid, is reported and the others are still opened.",
    },
    initrd: {
      type: "boolean",
      help: "with --auto: only the volumes with open_in_initrd = true, and without mounting them (what cryptpilot-volumes-initrd.service runs in the initrd, before root; cryptpilot-volumes.service mounts them per [mount] in the booted system).",
    },
  },
  positionals: true,
  footer: "Exit status: 0 all opened, 1 a volume failed (the others are still opened), 2 bad config.",
  async run({ values, positionals, globals, usageError }) {
    const auto = values.auto === true;
    const initrd = values.initrd === true;
    if (auto === positionals.length > 0) {
      throw usageError("name the volumes to open, or pass --auto (not both)");
    }
    if (initrd && !auto) throw usageError("--initrd goes with --auto");
    const { openVolume } = await import("../volume/ops.ts");
    let volumes: VolumeConfig[];
    let badFiles = 0;
    if (auto) {
      const checked = await checkVolumes(globals.configDir);
      for (const issue of checked.issues) log.error(`skipping an invalid volume file: ${formatIssue(issue)}`);
      badFiles = new Set(checked.issues.map((i) => i.file)).size;
      const wanted = (vol: VolumeConfig) => (initrd ? vol.openInInitrd : vol.autoOpen);
      volumes = checked.volumes.filter(wanted);
      const others = checked.volumes.filter((vol) => !wanted(vol)).map((vol) => vol.volume);
      const field = initrd ? "open_in_initrd" : "auto_open";
      if (others.length > 0)
        print(
          `not ${initrd ? "opened in the initrd" : "auto-opened"} (${field} = false): ${others.join(", ")}`,
        );
      if (volumes.length === 0 && badFiles === 0) print(`no volume has ${field} = true; nothing to open`);
    } else {
      volumes = [];
      for (const name of positionals) volumes.push(await loadVolume(globals.configDir, name));
    }
    const { failed } = await forEachVolume(volumes, globals.verbose, (vol) =>
      openVolume(vol, globals.configDir, { mount: !initrd }),
    );
    return failed.length > 0 || badFiles > 0 ? 1 : 0;
  },
});

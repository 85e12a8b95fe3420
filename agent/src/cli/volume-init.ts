/** `volume init`: format data volumes as LUKS2 with their provider's key. */
import { loadVolume } from "../config/volume.ts";
import { forEachVolume } from "../volume/batch.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: "VOLUME... [--force-reinit] [-y]",
  description: `Formats each volume's device (from DIR/volumes/*.toml) as LUKS2 with the key from the volume's
key provider, runs makefs, and marks it initialised. The marker (the LUKS2 subsystem label) goes
from "cryptpilot-initializing" to "cryptpilot" only when everything succeeded, so an interrupted
init is simply run again. otp volumes are formatted on every open; init only claims their device.

A device that is already initialised, or on which blkid finds any signature (a filesystem, a
partition table, another LUKS header), is refused.`,
  flags: {
    "force-reinit": { type: "boolean", help: "destroy the device's contents and initialise it anyway" },
    yes: {
      type: "boolean",
      short: "y",
      help: "accepted for upstream cryptpilot-crypt compatibility (init never prompts)",
    },
  },
  positionals: true,
  footer: "Exit status: 0 all initialised, 1 a volume failed (the others are still done), 2 bad config.",
  async run({ values, positionals, globals, usageError }) {
    if (positionals.length === 0) throw usageError("name at least one volume");
    const volumes = [];
    for (const name of positionals) volumes.push(await loadVolume(globals.configDir, name));
    const { initVolume } = await import("../volume/ops.ts");
    const { failed } = await forEachVolume(volumes, globals.verbose, (vol) =>
      initVolume(vol, globals.configDir, { forceReinit: values["force-reinit"] === true }),
    );
    return failed.length > 0 ? 1 : 0;
  },
});

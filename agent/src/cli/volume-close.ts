/** `volume close`: unmount and close data volumes. */
import { loadVolume } from "../config/volume.ts";
import { forEachVolume } from "../volume/batch.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: "VOLUME...",
  description: `Unmounts (or swaps off) each volume per its [mount] table and closes /dev/mapper/VOLUME.
Closing an otp volume discards its contents for good: the next open formats it with a new key.
A volume that is not open is left alone.`,
  flags: {},
  positionals: true,
  footer: "Exit status: 0 all closed, 1 a volume failed (the others are still closed), 2 bad config.",
  async run({ positionals, globals, usageError }) {
    if (positionals.length === 0) throw usageError("name at least one volume");
    const volumes = [];
    for (const name of positionals) volumes.push(await loadVolume(globals.configDir, name));
    const { closeVolume } = await import("../volume/ops.ts");
    const { failed } = await forEachVolume(volumes, globals.verbose, closeVolume);
    return failed.length > 0 ? 1 : 0;
  },
});

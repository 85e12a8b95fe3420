/** `volume close`: unmount and close data volumes. */
import { loadVolume } from "../config/volume.ts";
import { UsageError } from "../errors.ts";
import { forEachVolume } from "../volume/batch.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] volume close VOLUME...

Unmounts (or swaps off) each volume per its [mount] table and closes /dev/mapper/VOLUME.
Closing an otp volume discards its contents for good: the next open formats it with a new key.
A volume that is not open is left alone.

Exit status: 0 all closed, 1 a volume failed (the others are still closed), 2 bad config.`;

const command: Command = {
  name: ["volume", "close"],
  summary: "Unmount and close data volumes",
  usage: USAGE,
  async run(args, globals) {
    const { positionals } = parseCommandArgs("volume close", args, {}, true);
    if (positionals.length === 0) throw new UsageError("volume close: name at least one volume");
    const volumes = [];
    for (const name of positionals) volumes.push(await loadVolume(globals.configDir, name));
    const { closeVolume } = await import("../volume/ops.ts");
    const { failed } = await forEachVolume(volumes, globals.verbose, closeVolume);
    return failed.length > 0 ? 1 : 0;
  },
};

export default command;

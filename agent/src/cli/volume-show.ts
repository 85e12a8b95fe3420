/** `volume show`: each data volume's device, provider, status and auto-open setting. */
import { loadVolumes } from "../config/volume.ts";
import { ConfigError } from "../errors.ts";
import { print } from "../log.ts";
import { renderTable, showRows } from "../volume/show.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] volume show [VOLUME...] [--json]

Lists the data volumes of DIR/volumes/*.toml (or only the named ones) with their device, key
provider, status, auto-open setting and mount point. Status is one of Opened, ReadyToOpen,
RequiresInit, Initializing (an interrupted init), DeviceNotFound, CheckFailed (upstream
cryptpilot-crypt's names). Provider options are not shown (they may hold secrets).

Options:
  --json   print a JSON array (upstream's field names plus config_file and mount)`;

const command: Command = {
  name: ["volume", "show"],
  summary: "Show data volumes: device, key provider, status, auto-open (--json)",
  usage: USAGE,
  async run(args, globals) {
    const { values, positionals } = parseCommandArgs(
      "volume show",
      args,
      { json: { type: "boolean" } },
      true,
    );
    let volumes = await loadVolumes(globals.configDir);
    const names: string[] = positionals;
    if (names.length > 0) {
      const unknown = names.filter((name) => !volumes.some((vol) => vol.volume === name));
      if (unknown.length > 0) {
        throw new ConfigError(`no volume named ${unknown.join(", ")} in ${globals.configDir}/volumes`);
      }
      volumes = volumes.filter((vol) => names.includes(vol.volume));
    }
    const rows = await showRows(volumes);
    if (values.json) print(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) print(`No data volumes configured in ${globals.configDir}/volumes`);
    else print(renderTable(rows));
    return 0;
  },
};

export default command;

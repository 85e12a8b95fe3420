/** `volume show`: each data volume's device, provider, status and auto-open setting. */
import { loadVolumes } from "../config/volume.ts";
import { ConfigError } from "../errors.ts";
import { print } from "../log.ts";
import { renderTable, showRows } from "../volume/show.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: "[VOLUME...] [--json]",
  description: `Lists the data volumes of DIR/volumes/*.toml (or only the named ones) with their device, key
provider, status, auto-open setting and mount point. Status is one of Opened, ReadyToOpen,
RequiresInit, Initializing (an interrupted init), DeviceNotFound, CheckFailed (upstream
cryptpilot-crypt's names). Provider options are not shown (they may hold secrets).`,
  flags: {
    json: { type: "boolean", help: "print a JSON array (upstream's field names plus config_file and mount)" },
  },
  positionals: true,
  async run({ values, positionals, globals }) {
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
});

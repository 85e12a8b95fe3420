/** `config dump`: print the effective configuration as a cloud-init bundle, as upstream does. */
import { dumpBundle, loadConfig } from "../config/index.ts";
import { ConfigError, FdeError } from "../errors.ts";
import { print } from "../log.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] config dump [--disk PATH]

Prints the effective fde.toml and global.toml of the configuration directory (defaults filled
in) as one TOML bundle behind upstream's "#cryptpilot-fde-config" header, ready to be used as
cloud-init user data.

Options:
  --disk PATH   read the configuration from the initrd inside a disk image (not available yet)`;

const command: Command = {
  name: ["config", "dump"],
  summary: "Print the effective FDE configuration as TOML",
  usage: USAGE,
  async run(args, globals) {
    const { values } = parseCommandArgs("config dump", args, { disk: { type: "string" } });
    if (values.disk !== undefined) {
      throw new FdeError(
        "config dump --disk is not available in this build yet: it needs the disk-image and initrd reader of show-reference-value.",
        { exitCode: 3, hint: `dump the configuration directory instead: cryptpilot-fde -c DIR config dump` },
      );
    }
    const config = await loadConfig(globals.configDir);
    if (!config.fde) {
      throw new ConfigError(
        `${globals.configDir}/fde.toml does not exist; there is no FDE configuration to dump`,
      );
    }
    print(dumpBundle(config).replace(/\n$/, ""));
    return 0;
  },
};

export default command;

/** `config dump`: print the effective configuration as a cloud-init bundle, as upstream does. */
import { readFile } from "node:fs/promises";
import { dumpBundle, type LoadedConfig, loadConfig, parseConfigTexts } from "../config/index.ts";
import { ConfigError, FdeError } from "../errors.ts";
import { print } from "../log.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] config dump [--initrd FILE | --disk PATH]

Prints the effective fde.toml and global.toml (defaults filled in) as one TOML bundle behind
upstream's "#cryptpilot-fde-config" header, ready to be used as cloud-init user data. By default
from the configuration directory.

Options:
  --initrd FILE   read /etc/cryptpilot/ from an initrd image (cpio; uncompressed, gzip or zstd)
  --disk PATH     read it from the initrd inside a disk image (not available yet)`;

async function fromInitrd(file: string): Promise<LoadedConfig> {
  let image: Uint8Array;
  try {
    image = await readFile(file);
  } catch (cause) {
    throw new ConfigError(`cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  const { readInitrdConfig } = await import("../config/initrd.ts");
  const files = await readInitrdConfig(image, file);
  return parseConfigTexts(
    { fde: files["fde.toml"], global: files["global.toml"] },
    `${file}:/etc/cryptpilot`,
  );
}

const command: Command = {
  name: ["config", "dump"],
  summary: "Print the effective FDE configuration as TOML",
  usage: USAGE,
  async run(args, globals) {
    const { values } = parseCommandArgs("config dump", args, {
      disk: { type: "string" },
      initrd: { type: "string" },
    });
    if (values.disk !== undefined) {
      throw new FdeError(
        "config dump --disk is not available in this build yet: it needs the initrd locator of show-reference-value.",
        {
          exitCode: 3,
          hint: "extract the initrd and use --initrd FILE, or dump the configuration directory (-c DIR)",
        },
      );
    }
    const source =
      values.initrd === undefined
        ? `${globals.configDir}/fde.toml`
        : `${values.initrd}:/etc/cryptpilot/fde.toml`;
    const config =
      values.initrd === undefined ? await loadConfig(globals.configDir) : await fromInitrd(values.initrd);
    if (!config.fde) throw new ConfigError(`${source} does not exist; there is no FDE configuration to dump`);
    print(dumpBundle(config).replace(/\n$/, ""));
    return 0;
  },
};

export default command;

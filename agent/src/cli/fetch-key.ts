/**
 * `fetch-key`: fetch one volume's key through its provider, for operators testing a provider
 * setup. The key goes to a 0600 file or to a pipe, never to a terminal.
 */
import { closeSync, fchmodSync, openSync, writeSync } from "node:fs";
import { isatty } from "node:tty";
import { loadConfig } from "../config/index.ts";
import { ConfigError, FdeError, UsageError } from "../errors.ts";
import { log } from "../log.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] fetch-key --volume rootfs|delta [--out FILE]

Fetches the key of one FDE volume through the key provider configured in fde.toml and writes
the raw bytes to FILE (created with mode 0600) or to stdout. It refuses to write to a terminal.

Options:
  --volume rootfs|delta   which volume's key
  --out FILE              write the key to FILE instead of stdout`;

function writeKeyFile(file: string, key: Uint8Array): void {
  let fd: number;
  try {
    fd = openSync(file, "w", 0o600);
  } catch (cause) {
    throw new FdeError(`cannot create ${file}: ${(cause as Error).message}`, { cause });
  }
  try {
    // The mode given to open() only applies to new files; an existing file is tightened too.
    fchmodSync(fd, 0o600);
    writeSync(fd, key);
  } finally {
    closeSync(fd);
  }
}

const command: Command = {
  name: ["fetch-key"],
  summary: "Fetch one volume's key through its provider (to test provider setup)",
  usage: USAGE,
  async run(args, globals) {
    const { values } = parseCommandArgs("fetch-key", args, {
      volume: { type: "string" },
      out: { type: "string" },
    });
    const volume = values.volume;
    if (volume !== "rootfs" && volume !== "delta") {
      throw new UsageError("fetch-key: --volume rootfs or --volume delta is required");
    }
    if (values.out === undefined && isatty(1)) {
      throw new UsageError(
        "fetch-key: refusing to write a key to a terminal; use --out FILE or redirect stdout to a file or pipe",
      );
    }
    const { fde } = await loadConfig(globals.configDir);
    if (!fde) throw new ConfigError(`${globals.configDir}/fde.toml does not exist; no volume is configured`);
    const encrypt = volume === "rootfs" ? fde.rootfs.encrypt : fde.delta.encrypt;
    if (!encrypt) {
      throw new ConfigError(`the rootfs is not encrypted: fde.toml has no [rootfs.encrypt.<provider>] table`);
    }
    const { createProvider } = await import("../providers/index.ts");
    const provider = await createProvider(encrypt, { volume, configDir: globals.configDir });
    const key = await provider.getKey();
    if (values.out === undefined) {
      await Bun.write(Bun.stdout, key);
    } else {
      writeKeyFile(values.out, key);
    }
    log.info(
      `${volume}: ${key.length}-byte key from ${provider.describe()} written to ${values.out ?? "stdout"}` +
        (provider.temporary ? " (a temporary provider: the next call gives a different key)" : ""),
    );
    key.fill(0);
    return 0;
  },
};

export default command;

/**
 * `fetch-key`: fetch one volume's key through its provider, for operators testing a provider
 * setup. The key goes to a new 0600 file (key-file.ts) or to a pipe, never to a terminal.
 */
import { isatty } from "node:tty";
import { loadConfig } from "../config/index.ts";
import { ConfigError } from "../errors.ts";
import { log } from "../log.ts";
import { defineCommand } from "./command.ts";
import { checkKeyTarget, writeKeyFile } from "./key-file.ts";

export default defineCommand({
  usage: "--volume rootfs|delta [--out FILE [--force]]",
  description: `Fetches the key of one FDE volume through the key provider configured in fde.toml and writes
the raw bytes to FILE or to stdout. FILE is created new with mode 0600; an existing path, a
symlink, FIFO, device or terminal is refused. It refuses to write to a terminal on stdout too.`,
  flags: {
    volume: { type: "string", value: "rootfs|delta", help: "which volume's key" },
    out: { type: "string", value: "FILE", help: "write the key to the new file FILE instead of stdout" },
    force: {
      type: "boolean",
      help: "with --out: replace FILE if it is your own regular file (a new 0600 file is renamed over it)",
    },
  },
  async run({ values, globals, usageError }) {
    const volume = values.volume;
    if (volume !== "rootfs" && volume !== "delta") {
      throw usageError("--volume rootfs or --volume delta is required");
    }
    const force = values.force === true;
    if (force && values.out === undefined) throw usageError("--force only applies to --out FILE");
    // Checked before the key is fetched (a temporary provider's key would be lost); writeKeyFile
    // checks again, race-free, when it creates the file.
    if (values.out !== undefined) checkKeyTarget(values.out, force);
    if (values.out === undefined && isatty(1)) {
      throw usageError(
        "refusing to write a key to a terminal; use --out FILE or redirect stdout to a file or pipe",
      );
    }
    const { fde } = await loadConfig(globals.configDir);
    if (!fde) throw new ConfigError(`${globals.configDir}/fde.toml does not exist; no volume is configured`);
    const encrypt = volume === "rootfs" ? fde.rootfs.encrypt : fde.delta.encrypt;
    if (!encrypt) {
      throw new ConfigError(`the rootfs is not encrypted: fde.toml has no [rootfs.encrypt.<provider>] table`);
    }
    const { BOOT_FRESH_KEY, createProvider } = await import("../providers/index.ts");
    const provider = await createProvider(encrypt, {
      volume,
      configDir: globals.configDir,
      freshKey: BOOT_FRESH_KEY[volume],
    });
    const key = await provider.getKey();
    try {
      if (values.out === undefined) {
        await Bun.write(Bun.stdout, key);
      } else {
        writeKeyFile(values.out, key, force);
      }
    } finally {
      key.fill(0);
    }
    log.info(
      `${volume}: ${key.length}-byte key from ${provider.describe()} written to ${values.out ?? "stdout"}` +
        (provider.temporary ? " (a temporary provider: the next call gives a different key)" : ""),
    );
    return 0;
  },
});

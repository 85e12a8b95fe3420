/**
 * `config check`: validate global.toml, fde.toml and metadata.toml, then (unless
 * --skip-check-passphrase) fetch each volume's key from its provider, never printing it.
 */
import { type ConfigIssue, checkConfigDir, formatIssue, type ProviderConfig } from "../config/index.ts";
import { ConfigError, FdeError, formatError } from "../errors.ts";
import { log, print } from "../log.ts";
import { CHECK_FLAGS } from "./check-flags.ts";
import { defineCommand } from "./command.ts";

/**
 * A missing or mistyped configuration directory is an error: reporting "passed" for a directory
 * that does not exist would make a typo in -c look like a valid configuration.
 */
async function requireDirectory(configDir: string): Promise<void> {
  const { stat } = await import("node:fs/promises");
  let isDir: boolean;
  try {
    isDir = (await stat(configDir)).isDirectory();
  } catch (cause) {
    throw new ConfigError(
      `the configuration directory ${configDir} cannot be read: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  if (!isDir) throw new ConfigError(`the configuration directory ${configDir} is not a directory`);
}

/** Fetch one volume's key; resolves to the error instead of throwing. */
async function checkKey(
  volume: string,
  config: ProviderConfig,
  configDir: string,
): Promise<FdeError | undefined> {
  const { BOOT_FRESH_KEY, createProvider } = await import("../providers/index.ts");
  try {
    const freshKey = BOOT_FRESH_KEY[volume as keyof typeof BOOT_FRESH_KEY];
    const provider = await createProvider(config, { volume, configDir, freshKey });
    const key = await provider.getKey();
    key.fill(0);
    print(`${volume}: key fetched from ${provider.describe()}`);
    return undefined;
  } catch (err) {
    if (err instanceof FdeError) return err;
    return new FdeError(`${volume}: ${formatError(err)}`, { cause: err });
  }
}

export default defineCommand({
  usage: "[--keep-checking] [--skip-check-passphrase]",
  description: `Validates fde.toml, global.toml, (if present) metadata.toml and volumes/*.toml in the
configuration directory, then fetches the key of each encrypted volume (rootfs, delta, data
volumes) from its key provider and reports success per volume. The key itself is never printed.`,
  flags: CHECK_FLAGS,
  footer: "Exit status: 0 all good, 2 a configuration file is invalid, 1 a key could not be fetched.",
  async run({ values, globals }) {
    const keepChecking = values["keep-checking"] === true;
    const { configDir } = globals;
    print(`Checking the configuration in ${configDir}`);
    await requireDirectory(configDir);

    const checked = await checkConfigDir(configDir);
    const configIssues: ConfigIssue[] = checked.issues;
    if (configIssues.length > 0 && !keepChecking) {
      const [first] = configIssues;
      throw new ConfigError(formatIssue(first!), {
        hint:
          configIssues.length > 1
            ? `${configIssues.length - 1} more problem(s); run with --keep-checking to see them all`
            : undefined,
      });
    }
    for (const issue of configIssues) log.error(formatIssue(issue));

    const keyErrors: FdeError[] = [];
    const { fde } = checked;
    if (fde === undefined) {
      if (configIssues.length === 0) print("No fde.toml: this is not an FDE system; nothing to check");
    } else {
      const volumes: [string, ProviderConfig | undefined][] = [
        ["rootfs", fde.rootfs.encrypt],
        ["delta", fde.delta.encrypt],
      ];
      for (const [volume, encrypt] of volumes) {
        if (!encrypt) {
          print(`${volume}: not encrypted (dm-verity protected only)`);
        } else if (values["skip-check-passphrase"]) {
          print(`${volume}: ${encrypt.type} key provider configured (key not fetched)`);
        } else {
          const error = await checkKey(volume, encrypt, configDir);
          if (error && !keepChecking) throw error;
          if (error) {
            log.error(formatError(error, globals.verbose));
            keyErrors.push(error);
          }
        }
      }
    }
    if (checked.metadata) print(`metadata.toml: dm-verity root hash ${checked.metadata.rootHash}`);
    // Data volumes (volumes/*.toml), with the same flags; `volume check` runs this part alone.
    const { checkVolumeConfigs } = await import("../volume/check.ts");
    const volumeCheck = await checkVolumeConfigs(configDir, {
      keepChecking,
      skipKeys: values["skip-check-passphrase"] === true,
      verbose: globals.verbose,
    });
    configIssues.push(...volumeCheck.configIssues);
    keyErrors.push(...volumeCheck.keyErrors);

    const problems = configIssues.length + keyErrors.length;
    if (problems > 0) {
      log.error(`FDE config check failed: ${problems} problem(s), see above`);
      return configIssues.length > 0 ? 2 : 1;
    }
    print("FDE config check passed");
    return 0;
  },
});

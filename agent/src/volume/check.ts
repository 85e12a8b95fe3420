/**
 * The volume part of `config check` (and `volume check`): validate every file in volumes/, then
 * fetch each volume's key from its provider unless told not to. Keys are zeroed, never shown.
 */
import { type ConfigIssue, formatIssue } from "../config/issues.ts";
import { checkVolumes, volumesDir } from "../config/volume.ts";
import { ConfigError, FdeError, formatError } from "../errors.ts";
import { log, print } from "../log.ts";
import { providerFor } from "./ops.ts";

export interface VolumeCheckOptions {
  keepChecking: boolean;
  skipKeys: boolean;
  verbose: boolean;
}

export interface VolumeCheckResult {
  volumes: number;
  configIssues: ConfigIssue[];
  keyErrors: FdeError[];
}

/**
 * Prints one line per volume. Without keepChecking the first problem is thrown (ConfigError for
 * a file, the provider's error for a key); with it, every problem is logged and returned.
 */
export async function checkVolumeConfigs(
  configDir: string,
  options: VolumeCheckOptions,
): Promise<VolumeCheckResult> {
  const { volumes, issues } = await checkVolumes(configDir);
  if (issues.length > 0 && !options.keepChecking) {
    throw new ConfigError(formatIssue(issues[0]!), {
      hint:
        issues.length > 1
          ? `${issues.length - 1} more problem(s); run with --keep-checking to see them all`
          : undefined,
    });
  }
  for (const issue of issues) log.error(formatIssue(issue));
  if (volumes.length === 0 && issues.length === 0)
    print(`No data volumes configured in ${volumesDir(configDir)}`);

  const keyErrors: FdeError[] = [];
  for (const vol of volumes) {
    const what = `volume ${vol.volume} (${vol.dev}, ${vol.file})`;
    if (options.skipKeys) {
      print(`${what}: ${vol.encrypt.type} key provider configured (key not fetched)`);
      continue;
    }
    try {
      // What `volume init` would get for a volume not initialised yet (the key is dropped).
      const provider = await providerFor(vol, configDir, "allowed");
      const key = await provider.getKey();
      key.fill(0);
      print(`${what}: key fetched from ${provider.describe()}`);
    } catch (err) {
      const error =
        err instanceof FdeError ? err : new FdeError(`${what}: ${formatError(err)}`, { cause: err });
      if (!options.keepChecking) throw error;
      log.error(`${what}: ${formatError(error, options.verbose)}`);
      keyErrors.push(error);
    }
  }
  return { volumes: volumes.length, configIssues: issues, keyErrors };
}

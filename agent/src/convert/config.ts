/** convert's check that the config it bakes into the initrd matches the flags. */
import { loadConfig } from "../config/index.ts";
import { ConfigFileError } from "../config/issues.ts";
import { checkVolumes } from "../config/volume.ts";
import { ConfigError } from "../errors.ts";

export async function checkConfig(configDir: string, encryptRootfs: boolean): Promise<void> {
  const { fde } = await loadConfig(configDir);
  if (!fde)
    throw new ConfigError(`${configDir}/fde.toml does not exist; convert needs the FDE configuration`);
  const configured = fde.rootfs.encrypt !== undefined;
  if (configured && !encryptRootfs) {
    throw new ConfigError(
      `${configDir}/fde.toml has [rootfs.encrypt] but --rootfs-no-encryption was given: the boot would look for a LUKS2 rootfs that does not exist`,
      { hint: "pass --rootfs-key-file with the key the rootfs provider returns, or remove [rootfs.encrypt]" },
    );
  }
  if (!configured && encryptRootfs) {
    throw new ConfigError(
      `${configDir}/fde.toml has no [rootfs.encrypt] but a rootfs key was given: the boot could not open the encrypted rootfs`,
      { hint: "add [rootfs.encrypt.<provider>] returning the same key, or use --rootfs-no-encryption" },
    );
  }
  // Volume files go into the image (and the initrd, for open_in_initrd ones): a bad one would only
  // show up at boot, so refuse it here.
  const { issues } = await checkVolumes(configDir);
  if (issues.length > 0) throw new ConfigFileError(issues);
}

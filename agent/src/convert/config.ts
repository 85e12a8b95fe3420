/** convert's check that the config it bakes into the initrd matches the flags. */
import { loadConfig, type Tpm2Config } from "../config/index.ts";
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

/**
 * --tpm2-enroll: the rootfs provider's [rootfs.encrypt.tpm2] table, whose policy the new key is
 * sealed under (the boot unseals it with that same table).
 */
export async function rootfsTpm2Config(configDir: string): Promise<Tpm2Config> {
  const { fde } = await loadConfig(configDir);
  const encrypt = fde?.rootfs.encrypt;
  if (encrypt?.type !== "tpm2") {
    throw new ConfigError(
      `--tpm2-enroll seals the rootfs key for the tpm2 key provider, but ${configDir}/fde.toml ${encrypt ? `unlocks the rootfs with the ${encrypt.type} provider` : "has no [rootfs.encrypt]"}: the boot would never read the sealed key`,
      { hint: "configure [rootfs.encrypt.tpm2] (pcrs = [...]) in fde.toml, or drop --tpm2-enroll" },
    );
  }
  return encrypt;
}

/** `config reference-value FILE`: what a broker's policy expects for a user-data bundle (issue #17). */
import { print } from "../log.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: "BUNDLE_FILE",
  description: `Prints, as JSON, the sha384 of a configuration bundle (the user data an instance boots with,
e.g. the output of 'config dump'; the same hash upstream cryptpilot computes), the AAEL event the boot
records before it uses the bundle ("cryptpilot.alibabacloud.com load_config_untrusted <sha384>"), and
per register (TDX RTMR3, TPM PCR) the digest it is extended with, for the key broker's policy.`,
  flags: {},
  positionals: true,
  configDir: false,
  async run({ positionals, usageError }) {
    if (positionals.length !== 1) throw usageError("give exactly one bundle file");
    const { bundleReference } = await import("../config/bundle-reference.ts");
    print(JSON.stringify(await bundleReference(positionals[0]!), null, 2));
    return 0;
  },
});

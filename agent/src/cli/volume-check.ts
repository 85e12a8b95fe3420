/** `volume check`: the data-volume half of `config check`, on its own. */
import { log, print } from "../log.ts";
import { checkVolumeConfigs } from "../volume/check.ts";
import { CHECK_FLAGS } from "./check-flags.ts";
import { defineCommand } from "./command.ts";

export default defineCommand({
  usage: "[--keep-checking] [--skip-check-passphrase]",
  description: `Validates every DIR/volumes/*.toml, then fetches each volume's key from its key provider and
reports success per volume (the key is never printed). 'config check' runs the same checks
together with those of fde.toml.`,
  flags: CHECK_FLAGS,
  footer: "Exit status: 0 all good, 2 a volume file is invalid, 1 a key could not be fetched.",
  async run({ values, globals }) {
    const result = await checkVolumeConfigs(globals.configDir, {
      keepChecking: values["keep-checking"] === true,
      skipKeys: values["skip-check-passphrase"] === true,
      verbose: globals.verbose,
    });
    const problems = result.configIssues.length + result.keyErrors.length;
    if (problems > 0) {
      log.error(`volume check failed: ${problems} problem(s), see above`);
      return result.configIssues.length > 0 ? 2 : 1;
    }
    print("volume check passed");
    return 0;
  },
});

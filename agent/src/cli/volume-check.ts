/** `volume check`: the data-volume half of `config check`, on its own. */
import { log, print } from "../log.ts";
import { checkVolumeConfigs } from "../volume/check.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const USAGE = `Usage: cryptpilot-fde [-c DIR] volume check [--keep-checking] [--skip-check-passphrase]

Validates every DIR/volumes/*.toml, then fetches each volume's key from its key provider and
reports success per volume (the key is never printed). 'config check' runs the same checks
together with those of fde.toml.

Options:
  --keep-checking           report every problem instead of stopping at the first
  --skip-check-passphrase   validate the files only; do not contact the key providers

Exit status: 0 all good, 2 a volume file is invalid, 1 a key could not be fetched.`;

const command: Command = {
  name: ["volume", "check"],
  summary: "Validate the data-volume files and test each volume's key provider",
  usage: USAGE,
  async run(args, globals) {
    const { values } = parseCommandArgs("volume check", args, {
      "keep-checking": { type: "boolean" },
      "skip-check-passphrase": { type: "boolean" },
    });
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
};

export default command;

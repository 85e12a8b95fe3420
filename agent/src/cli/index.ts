/**
 * The command table and global-flag handling. Command modules are imported lazily so that
 * `--version` and `config check` do not pay for the KBS, TPM or image-reading code.
 */
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { FdeError, formatError, UsageError } from "../errors.ts";
import { print, setVerbose } from "../log.ts";
import { VERSION } from "../version.ts";
import type { Command, GlobalOptions } from "./command.ts";

interface CommandEntry {
  name: string[];
  summary: string;
  load: () => Promise<Command>;
}

export const commands: CommandEntry[] = [
  {
    name: ["config", "check"],
    summary: "Validate fde.toml, global.toml and metadata.toml, and test each volume's key provider",
    load: async () => (await import("./config-check.ts")).default,
  },
  {
    name: ["config", "dump"],
    summary: "Print the effective FDE configuration as TOML (for cloud-init user data)",
    load: async () => (await import("./config-dump.ts")).default,
  },
  {
    name: ["fetch-key"],
    summary: "Fetch one volume's key through its provider (to test provider setup)",
    load: async () => (await import("./fetch-key.ts")).default,
  },
  {
    name: ["boot-service"],
    summary: "Run one initrd boot stage (used by the systemd units in the initrd)",
    load: async () => (await import("./boot-service.ts")).default,
  },
  {
    name: ["show-reference-value"],
    summary: "Print the boot measurements an attestation service should expect for a disk image",
    load: async () => (await import("./show-reference-value.ts")).default,
  },
  {
    name: ["tpm2", "enroll"],
    summary: "Seal a volume's key to this machine's TPM (PCR policy, optional PIN) into its LUKS2 header",
    load: async () => (await import("./tpm2-enroll.ts")).default,
  },
  {
    name: ["convert"],
    summary: "Convert a plain disk image into the encrypted, verity-protected FDE layout",
    load: async () => (await import("./convert.ts")).default,
  },
  {
    name: ["volume", "init"],
    summary: "Initialise data volumes (LUKS2 with the provider's key, makefs)",
    load: async () => (await import("./volume-init.ts")).default,
  },
  {
    name: ["volume", "open"],
    summary: "Open data volumes and mount them per their [mount] table (--auto: boot service)",
    load: async () => (await import("./volume-open.ts")).default,
  },
  {
    name: ["volume", "close"],
    summary: "Unmount and close data volumes",
    load: async () => (await import("./volume-close.ts")).default,
  },
  {
    name: ["volume", "show"],
    summary: "Show data volumes: device, key provider, status, auto-open (--json)",
    load: async () => (await import("./volume-show.ts")).default,
  },
  {
    name: ["volume", "check"],
    summary: "Validate the data-volume files and test each volume's key provider",
    load: async () => (await import("./volume-check.ts")).default,
  },
];

const MAIN_USAGE = `cryptpilot-fde ${VERSION}: full-disk encryption for confidential VMs

Usage: cryptpilot-fde [GLOBAL OPTIONS] COMMAND [ARGS]

Global options:
  -c, --config-dir DIR   configuration directory (default /etc/cryptpilot)
      --verbose          debug logging
      --version          print the version and exit
  -h, --help             print this help, or a command's help after the command

Commands:
${commands.map((c) => `  ${c.name.join(" ").padEnd(22)} ${c.summary}`).join("\n")}
`;

/** Split global options from the command words and the command's own arguments. */
function splitGlobals(argv: string[]): {
  globals: GlobalOptions;
  rest: string[];
  help: boolean;
  version: boolean;
} {
  const globals: GlobalOptions = { configDir: "/etc/cryptpilot", verbose: false };
  let help = false;
  let version = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-c" || arg === "--config-dir") {
      const value = argv[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a directory`);
      globals.configDir = value;
    } else if (arg.startsWith("--config-dir=")) {
      globals.configDir = arg.slice("--config-dir=".length);
    } else if (arg === "--verbose" || arg === "-v") {
      globals.verbose = true;
    } else if (arg === "--version" || arg === "-V") {
      version = true;
    } else if (arg === "--help" || arg === "-h") {
      help = true;
    } else {
      rest.push(arg);
    }
  }
  return { globals, rest, help, version };
}

function findCommand(words: string[]): { entry: CommandEntry; args: string[] } | undefined {
  // Longest match first, so "config check" wins over a hypothetical "config".
  const sorted = [...commands].sort((a, b) => b.name.length - a.name.length);
  for (const entry of sorted) {
    if (entry.name.every((w, i) => words[i] === w)) return { entry, args: words.slice(entry.name.length) };
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  let verbose = false;
  try {
    const { globals, rest, help, version } = splitGlobals(argv);
    verbose = globals.verbose;
    setVerbose(verbose);
    if (version) {
      print(`cryptpilot-fde ${VERSION}`);
      return 0;
    }
    if (rest.length === 0) {
      (help ? print : (text: string) => console.error("%s", text))(MAIN_USAGE.trimEnd());
      return help ? 0 : 2;
    }
    const found = findCommand(rest);
    if (!found) {
      const group = commands.filter((c) => c.name[0] === rest[0]);
      if (group.length > 0) {
        throw new UsageError(
          `'${rest.join(" ")}' is not a command. Did you mean: ${group.map((c) => c.name.join(" ")).join(", ")}?`,
        );
      }
      throw new UsageError(
        `unknown command '${rest[0]}'. Run 'cryptpilot-fde --help' for the list of commands.`,
      );
    }
    const command = await found.entry.load();
    if (help) {
      print(command.usage);
      return 0;
    }
    return await command.run(found.args, globals);
  } catch (err) {
    console.error("%s", `error: ${formatError(err, verbose)}`);
    return err instanceof FdeError ? err.exitCode : 1;
  }
}

/** parseArgs with errors turned into UsageError naming the command. */
export function parseCommandArgs<T extends ParseArgsOptionsConfig>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}`);
  }
}

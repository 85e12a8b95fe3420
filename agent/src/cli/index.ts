/**
 * The command table (the one list of command names, summaries and lazy loaders) and the global
 * flags. Command modules are imported lazily so that `--version` and `config check` do not pay for
 * the KBS, TPM or image-reading code; each declares its own flags (command.ts builds the parser and
 * the help from them), and nothing here is imported back by a command.
 */
import { FdeError, formatError, UsageError } from "../errors.ts";
import { print, setVerbose } from "../log.ts";
import { VERSION } from "../version.ts";
import {
  type Command,
  type CommandMeta,
  type Flags,
  type GlobalOptions,
  PROGRAM,
  renderFlags,
  renderHelp,
  runCommand,
} from "./command.ts";

interface CommandEntry extends CommandMeta {
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
    name: ["config", "reference-value"],
    summary: "Print the sha384 and AAEL event a broker policy expects for a user-data config bundle",
    load: async () => (await import("./config-reference.ts")).default,
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

/** The configuration directory when -c is not given. */
export const DEFAULT_CONFIG_DIR = "/etc/cryptpilot";

/** Options of the program itself, taken out of the arguments wherever they stand (before or after the command). */
export const GLOBAL_FLAGS = {
  "config-dir": {
    type: "string",
    short: "c",
    value: "DIR",
    help: `configuration directory (default ${DEFAULT_CONFIG_DIR})`,
  },
  verbose: {
    type: "boolean",
    short: "v",
    help: "debug logging; an unexpected error also prints its stack trace",
  },
  version: { type: "boolean", short: "V", help: "print the version and exit" },
  help: { type: "boolean", short: "h", help: "print this help, or a command's help after the command" },
} as const satisfies Flags;

/** The top-level `--help`, generated from GLOBAL_FLAGS and the table. */
export function mainUsage(): string {
  const width = Math.max(...commands.map((c) => c.name.join(" ").length)) + 3;
  return `${PROGRAM} ${VERSION}: full-disk encryption for confidential VMs

Usage: ${PROGRAM} [GLOBAL OPTIONS] COMMAND [ARGS]

Global options (before or after the command):
${renderFlags(GLOBAL_FLAGS)}

Commands:
${commands.map((c) => `  ${c.name.join(" ").padEnd(width)}${c.summary}`).join("\n")}`;
}

type GlobalName = keyof typeof GLOBAL_FLAGS;

/** The global flag an argument names (--name, --name=value for a string flag, -x), if any. */
function globalFlag(arg: string): { name: GlobalName; inline?: string } | undefined {
  for (const [name, flag] of Object.entries(GLOBAL_FLAGS) as [
    GlobalName,
    (typeof GLOBAL_FLAGS)[GlobalName],
  ][]) {
    if (arg === `--${name}` || arg === `-${flag.short}`) return { name };
    if (flag.type === "string" && arg.startsWith(`--${name}=`))
      return { name, inline: arg.slice(name.length + 3) };
  }
  return undefined;
}

/** Split global options from the command words and the command's own arguments. */
function splitGlobals(argv: string[]): {
  globals: GlobalOptions;
  rest: string[];
  help: boolean;
  version: boolean;
} {
  const globals: GlobalOptions = { configDir: DEFAULT_CONFIG_DIR, verbose: false };
  let help = false;
  let version = false;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const found = globalFlag(arg);
    if (found === undefined) {
      rest.push(arg);
    } else if (found.name === "config-dir") {
      const value = found.inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${arg} needs a directory`);
      globals.configDir = value;
    } else if (found.name === "verbose") {
      globals.verbose = true;
    } else if (found.name === "version") {
      version = true;
    } else {
      help = true;
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
      print(`${PROGRAM} ${VERSION}`);
      return 0;
    }
    if (rest.length === 0) {
      (help ? print : (text: string) => console.error("%s", text))(mainUsage());
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
      throw new UsageError(`unknown command '${rest[0]}'. Run '${PROGRAM} --help' for the list of commands.`);
    }
    const command = await found.entry.load();
    if (help) {
      print(renderHelp(found.entry, command));
      return 0;
    }
    return await runCommand(found.entry, command, found.args, globals);
  } catch (err) {
    console.error("%s", `error: ${formatError(err, verbose)}`);
    return err instanceof FdeError ? err.exitCode : 1;
  }
}

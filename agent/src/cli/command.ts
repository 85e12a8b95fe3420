/**
 * The CLI seam, in the spirit of unjs/citty: a command file declares its usage line, description
 * and flags once (defineCommand); the one flag parser and the `--help` text are built here from
 * that declaration, so help cannot miss a flag the parser accepts. Names and summaries are not
 * declared here but in the table (index.ts), which lists them without loading any command.
 * This module must stay light: main.ts loads it before `--version` (agent/test/cli/startup.test.ts).
 */
import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";

/** The program name in every synopsis and message. */
export const PROGRAM = "cryptpilot-fde";

/** Help text is wrapped to this many columns (flag descriptions; declared text is kept as written). */
export const HELP_WIDTH = 100;

export interface GlobalOptions {
  /** Directory holding fde.toml, global.toml, metadata.toml (default /etc/cryptpilot). */
  configDir: string;
  verbose: boolean;
}

/** One flag: what the parser accepts (node:util parseArgs options) and what `--help` says. */
export interface Flag {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** Placeholder for a string flag's value in help, e.g. "FILE" (default "VALUE"). */
  value?: string;
  /** What the flag does; wrapped to HELP_WIDTH, a "\n" starts a new line. */
  help: string;
}

export type Flags = Record<string, Flag>;

type FlagValue<F extends Flag> = F["type"] extends "boolean"
  ? F["multiple"] extends true
    ? boolean[]
    : boolean
  : F["multiple"] extends true
    ? string[]
    : string;

/** Parsed flag values, keyed by long name; a flag not given is absent. */
export type FlagValues<F extends Flags> = { [K in keyof F]?: FlagValue<F[K]> };

/** Words and summary of a command: the table's row (index.ts), the one place they are written. */
export interface CommandMeta {
  /** Words that select the command, e.g. ["config", "check"]. */
  name: readonly string[];
  summary: string;
}

export interface RunContext<F extends Flags> {
  values: FlagValues<F>;
  /** Operands (only when the command declares `positionals`). */
  positionals: string[];
  globals: GlobalOptions;
  /** A UsageError (exit 2) whose message starts with the command's words. */
  usageError(message: string): UsageError;
}

export interface CommandSpec<F extends Flags> {
  /**
   * The synopsis after the command's words, e.g. "--volume rootfs|delta [--out FILE]"; several
   * lines for alternative forms.
   */
  usage: string | readonly string[];
  /** Paragraphs printed under the synopsis, as written. */
  description: string;
  flags: F;
  /** Whether operands (e.g. VOLUME...) are accepted; by default any operand is a usage error. */
  positionals?: boolean;
  /** False for a command that never reads the configuration directory: no "[-c DIR]" in its synopsis. */
  configDir?: false;
  /** Printed after the options, e.g. the exit statuses. */
  footer?: string;
  /** Returns the process exit code. */
  run(ctx: RunContext<F>): Promise<number>;
}

/** What a command file exports by default. */
export type Command = CommandSpec<Flags>;

/** Declares a command; the identity, there to type `run`'s values from `flags`. */
export function defineCommand<const F extends Flags>(spec: CommandSpec<F>): Command {
  return spec as unknown as Command;
}

/** Parses `args` against the declared flags only (strict); a mistake is a UsageError naming the command. */
export function parseCommandArgs(
  meta: CommandMeta,
  command: Command,
  args: string[],
): { values: FlagValues<Flags>; positionals: string[] } {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  for (const [name, flag] of Object.entries(command.flags)) {
    // parseArgs rejects a `short: undefined` key, so only the declared properties are passed.
    options[name] = { type: flag.type };
    if (flag.short !== undefined) options[name].short = flag.short;
    if (flag.multiple !== undefined) options[name].multiple = flag.multiple;
  }
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: command.positionals === true,
      strict: true,
    });
    return { values: values as FlagValues<Flags>, positionals };
  } catch (err) {
    throw new UsageError(`${meta.name.join(" ")}: ${(err as Error).message}`);
  }
}

/** Parses the arguments and runs the command with them. */
export function runCommand(
  meta: CommandMeta,
  command: Command,
  args: string[],
  globals: GlobalOptions,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(meta, command, args);
  const prefix = meta.name.join(" ");
  return command.run({
    values,
    positionals,
    globals,
    usageError: (message) => new UsageError(`${prefix}: ${message}`),
  });
}

/** Greedy word wrap of one paragraph to `width` columns (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/ +/)) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

/** The label of a flag in help: "-d, --device DEV", aligned under "-x, " when any flag has a short. */
function flagLabel(name: string, flag: Flag, shortColumn: boolean): string {
  const long = `--${name}${flag.type === "string" ? ` ${flag.value ?? "VALUE"}` : ""}`;
  if (flag.short !== undefined) return `-${flag.short}, ${long}`;
  return shortColumn ? `    ${long}` : long;
}

/** An "Options:" style table of flags: labels in one column, help wrapped beside them. */
export function renderFlags(flags: Flags): string {
  const entries = Object.entries(flags);
  const shortColumn = entries.some(([, flag]) => flag.short !== undefined);
  const labels = entries.map(([name, flag]) => flagLabel(name, flag, shortColumn));
  const column = Math.max(...labels.map((label) => label.length)) + 3;
  const lines: string[] = [];
  entries.forEach(([, flag], i) => {
    const text = flag.help.split("\n").flatMap((part) => wrap(part, HELP_WIDTH - 2 - column));
    text.forEach((line, k) => {
      const lead = k === 0 ? labels[i]!.padEnd(column) : " ".repeat(column);
      lines.push(`  ${lead}${line}`.trimEnd());
    });
  });
  return lines.join("\n");
}

/** The `COMMAND --help` text, generated from the table row and the command's declaration. */
export function renderHelp(meta: CommandMeta, command: Command): string {
  const usages = typeof command.usage === "string" ? [command.usage] : command.usage;
  const head = `${PROGRAM}${command.configDir === false ? "" : " [-c DIR]"} ${meta.name.join(" ")}`;
  const synopsis = usages.map((u, i) => `${i === 0 ? "Usage: " : "       "}${head} ${u}`.trimEnd());
  const sections = [synopsis.join("\n"), command.description];
  if (Object.keys(command.flags).length > 0) sections.push(`Options:\n${renderFlags(command.flags)}`);
  if (command.footer !== undefined) sections.push(command.footer);
  sections.push(`Global options (-c, -v, -h) go before or after the command; see '${PROGRAM} --help'.`);
  return sections.join("\n\n");
}

/**
 * The CLI seam (cli/command.ts): every command's --help is generated from the same declaration the
 * parser reads, so help lists every flag the command accepts; the table (cli/index.ts) is the only
 * place command names and summaries are written; the global flags, -v and -V included, are in the
 * top-level usage. In-process: loads each command module, runs none.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { PROGRAM, parseCommandArgs, renderHelp } from "../../src/cli/command.ts";
import { commands, GLOBAL_FLAGS, main, mainUsage } from "../../src/cli/index.ts";
import { UsageError } from "../../src/errors.ts";

const CLI = resolve(import.meta.dir, "../../src/cli");

/** The "Options:" section of a help text (up to the next blank line). */
const optionsOf = (help: string) => /\nOptions:\n([\s\S]*?)(?:\n\n|$)/.exec(help)?.[1] ?? "";

const loaded = await Promise.all(commands.map(async (entry) => ({ entry, command: await entry.load() })));

describe("every command's --help is generated from its declaration", () => {
  for (const { entry, command } of loaded) {
    const words = entry.name.join(" ");
    test(words, () => {
      const help = renderHelp(entry, command);
      expect(help).toMatch(new RegExp(`^Usage: ${PROGRAM}( \\[-c DIR\\])? ${words}( |$)`, "m"));
      const options = optionsOf(help);
      for (const [name, flag] of Object.entries(command.flags)) {
        // Listed in the Options section, with its short form and value placeholder.
        const label = `${flag.short ? `-${flag.short}, ` : ""}--${name}${flag.type === "string" ? ` ${flag.value}` : ""}`;
        expect(options).toMatch(new RegExp(`^  \\s*${label.replace(/[|.*+?()[\]]/g, "\\$&")}  `, "m"));
        expect(flag.help.length).toBeGreaterThan(0);
        if (flag.type === "string") expect(flag.value).toBeDefined();
        // ...and what help lists is what the parser accepts.
        const args = flag.type === "string" ? [`--${name}`, "x"] : [`--${name}`];
        expect(parseCommandArgs(entry, command, args).values[name]).toBeDefined();
      }
      if (Object.keys(command.flags).length === 0) expect(help).not.toContain("Options:");
      // A flag that is not declared is a usage error naming the command.
      expect(() => parseCommandArgs(entry, command, ["--not-a-flag"])).toThrow(
        `${words}: Unknown option '--not-a-flag'`,
      );
      expect(() => parseCommandArgs(entry, command, ["--not-a-flag"])).toThrow(UsageError);
      // Operands only where declared.
      if (command.positionals)
        expect(parseCommandArgs(entry, command, ["vol0"]).positionals).toEqual(["vol0"]);
      else expect(() => parseCommandArgs(entry, command, ["stray"])).toThrow(UsageError);
    });
  }

  test("no global short flag is taken by a command for something else", () => {
    const globalShorts = new Map<string, string>(
      Object.entries(GLOBAL_FLAGS).map(([name, flag]) => [flag.short, name]),
    );
    for (const { entry, command } of loaded) {
      for (const [name, flag] of Object.entries(command.flags)) {
        if (flag.short === undefined || !globalShorts.has(flag.short)) continue;
        // convert's -c is the global -c's meaning (the config directory): the global one wins anyway.
        expect(`${entry.name.join(" ")} -${flag.short}: ${name}`).toBe(
          `${entry.name.join(" ")} -${flag.short}: ${globalShorts.get(flag.short)}`,
        );
      }
    }
  });
});

describe("the table is the one list of commands", () => {
  test("names are unique, and every command file in cli/ has a row", () => {
    const names = commands.map((c) => c.name.join(" "));
    expect(new Set(names).size).toBe(names.length);
    const tableText = readFileSync(join(CLI, "index.ts"), "utf8");
    const commandFiles = readdirSync(CLI).filter((f) =>
      /export default defineCommand\(/.test(readFileSync(join(CLI, f), "utf8")),
    );
    expect(commandFiles.length).toBe(commands.length);
    for (const file of commandFiles) expect(tableText).toContain(`import("./${basename(file)}")`);
  });

  test("command files declare no name or summary of their own, and parse flags only through command.ts", () => {
    for (const { command } of loaded) {
      expect(Object.keys(command)).not.toContain("name");
      expect(Object.keys(command)).not.toContain("summary");
    }
    for (const file of readdirSync(CLI).filter((f) => f.endsWith(".ts") && f !== "command.ts")) {
      const text = readFileSync(join(CLI, file), "utf8");
      expect(`${file}: ${/\bparseArgs\b|from "\.\/index\.ts"/.test(text)}`).toBe(`${file}: false`);
    }
  });

  test("the top-level usage lists every command with its summary and every global flag", () => {
    const usage = mainUsage();
    for (const { name, summary } of commands)
      expect(usage).toMatch(
        new RegExp(`^  ${name.join(" ")} +${summary.replace(/[|.*+?()[\]]/g, "\\$&")}$`, "m"),
      );
    for (const [name, flag] of Object.entries(GLOBAL_FLAGS))
      expect(usage).toContain(`-${flag.short}, --${name}`);
    expect(usage).toContain("-v, --verbose");
    expect(usage).toContain("-V, --version");
  });
});

describe("global flags", () => {
  /** Runs main() with console output captured. */
  async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const log = console.log;
    const error = console.error;
    // print() and the error path call console.log/error("%s", text).
    const capture =
      (into: string[]) =>
      (...a: unknown[]) =>
        void into.push((a[0] === "%s" ? a.slice(1) : a).map(String).join(" "));
    console.log = capture(out);
    console.error = capture(err);
    try {
      const code = await main(argv);
      return { code, out: out.join("\n"), err: err.join("\n") };
    } finally {
      console.log = log;
      console.error = error;
    }
  }

  test("-V and --version print the version; -h and --help the usage, before or after the command", async () => {
    const version = await run("-V");
    expect(version.code).toBe(0);
    expect(version.out).toStartWith(`${PROGRAM} `);
    expect((await run("--version")).out).toBe(version.out);
    expect((await run("-h")).out).toBe(mainUsage());
    const help = await run("volume", "show", "-h");
    expect(help.code).toBe(0);
    expect(help.out).toContain("--json");
    expect((await run("-h", "volume", "show")).out).toBe(help.out);
  });

  test("-c needs a value; --config-dir=DIR is one argument", async () => {
    const missing = await run("volume", "show", "-c");
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("-c needs a directory");
    const dir = `/nonexistent-${process.pid}`;
    const checked = await run("volume", "check", `--config-dir=${dir}`, "--skip-check-passphrase");
    expect(checked.out + checked.err).toContain(dir);
  });

  test("a boolean global flag with a value is the command's unknown option, as before", async () => {
    const r = await run("volume", "show", "--verbose=yes");
    expect(r.code).toBe(2);
    expect(r.err).toContain("volume show: ");
  });
});

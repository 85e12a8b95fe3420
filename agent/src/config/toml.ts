/** Reading TOML config files; syntax errors become ConfigFileErrors with smol-toml's line number. */
import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "../errors.ts";
import { ConfigFileError } from "./issues.ts";

export interface TomlSource {
  file: string;
  text: string;
  data: Record<string, unknown>;
}

export function parseToml(file: string, text: string): TomlSource {
  try {
    return { file, text, data: parse(text) as Record<string, unknown> };
  } catch (cause) {
    if (cause instanceof TomlError) {
      // smol-toml's message is "Invalid TOML document: <reason>\n\n<code excerpt>".
      const reason = cause.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      // No `cause`: its multi-line excerpt would break the one-paragraph message.
      throw new ConfigFileError([{ file, line: cause.line, message: `invalid TOML: ${reason}` }]);
    }
    throw cause;
  }
}

/** Read and parse a TOML file; undefined when it does not exist (callers decide if that is fine). */
export async function readToml(file: string): Promise<TomlSource | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new ConfigError(`cannot read ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseToml(file, text);
}

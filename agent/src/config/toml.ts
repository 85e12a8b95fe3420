/** Reading TOML config files; syntax errors become ConfigFileErrors with smol-toml's line number. */
import { parse, TomlError } from "smol-toml";
import { ConfigFileError } from "./issues.ts";
import { readRegularText } from "./read.ts";

/**
 * Largest configuration file read (fde.toml, global.toml, metadata.toml, volumes/*.toml, and the
 * same files inside an initrd). Real ones are a few KiB; the limit keeps parsing and the line
 * finder's work small whatever the host puts there.
 */
export const CONFIG_MAX_BYTES = 1 << 20;

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

/**
 * Read and parse a TOML file; undefined when it does not exist (callers decide if that is fine).
 * It must be a regular file of at most CONFIG_MAX_BYTES, in UTF-8 (TOML's encoding).
 */
export async function readToml(file: string): Promise<TomlSource | undefined> {
  const text = await readRegularText(file, CONFIG_MAX_BYTES, "configuration file");
  return text === undefined ? undefined : parseToml(file, text);
}

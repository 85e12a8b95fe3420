/**
 * Just enough of GRUB's script language to read a generated grub.cfg: word splitting with
 * quotes, backslash escapes and `$var`/`${var}` expansion (unquoted values are split into
 * words, as GRUB does), and the menuentry/submenu block structure.
 */

export type Vars = Record<string, string>;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9]+|^[?#]/;

/** Split one command line into the words GRUB passes to the command. */
export function splitWords(line: string, vars: Vars): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  const expand = (i: number): [string, number] => {
    // i points just after '$'
    if (line[i] === "{") {
      const end = line.indexOf("}", i);
      if (end < 0) return ["$", i];
      return [vars[line.slice(i + 1, end)] ?? "", end + 1];
    }
    const m = NAME.exec(line.slice(i));
    if (!m) return ["$", i];
    return [vars[m[0]] ?? "", i + m[0].length];
  };
  for (let i = 0; i < line.length; ) {
    const c = line[i]!;
    if (c === " " || c === "\t" || c === "\n") {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
      i++;
    } else if (c === "#" && !inWord) {
      break;
    } else if (c === "\\") {
      if (i + 1 < line.length && line[i + 1] !== "\n") cur += line[i + 1];
      inWord = true;
      i += 2;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      cur += line.slice(i + 1, end < 0 ? line.length : end);
      inWord = true;
      i = end < 0 ? line.length : end + 1;
    } else if (c === '"') {
      inWord = true;
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\" && i + 1 < line.length && '$"\\\n'.includes(line[i + 1]!)) {
          cur += line[i + 1];
          i += 2;
        } else if (line[i] === "$") {
          const [value, next] = expand(i + 1);
          cur += value;
          i = next;
        } else {
          cur += line[i++];
        }
      }
      i++;
    } else if (c === "$") {
      const [value, next] = expand(i + 1);
      // An unquoted expansion is split at blanks; an empty one adds no word by itself.
      const parts = value.split(/[ \t\n]+/);
      for (let p = 0; p < parts.length; p++) {
        if (p > 0) {
          if (inWord) words.push(cur);
          cur = "";
          inWord = false;
        }
        if (parts[p] !== "") {
          cur += parts[p];
          inWord = true;
        }
      }
      i = next;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/**
 * The kernel command line GRUB builds from the `linux` command's words (grub_create_loader_cmdline):
 * words joined by one space; a word containing a space is double-quoted, and `\`, `'` and `"` are
 * backslash-escaped. The kernel path is the first word, so this is also the measured string.
 */
export function loaderCmdline(words: string[]): string {
  return words
    .map((w) => {
      const escaped = w.replace(/[\\'"]/g, (m) => `\\${m}`);
      return w.includes(" ") ? `"${escaped}"` : escaped;
    })
    .join(" ");
}

export interface MenuEntry {
  kind: "menuentry";
  title: string;
  id?: string;
  /** Body lines, continuation lines already joined. */
  body: string[];
}

export interface Submenu {
  kind: "submenu";
  title: string;
  id?: string;
  entries: MenuItem[];
}

export type MenuItem = MenuEntry | Submenu;

export interface ParsedConfig {
  /** Top-level menu, in order; `blscfg` marks where blscfg inserts the BLS entries. */
  items: (MenuItem | { kind: "blscfg" })[];
  /** Every `set name=value` / `name=value` outside menu entries, in file order (raw and expanded). */
  assignments: { name: string; raw: string; value: string }[];
}

const ASSIGN = /^(?:set\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;

/** Logical lines: trailing-backslash continuations joined, blank lines and comments dropped. */
function logicalLines(text: string): string[] {
  const out: string[] = [];
  let acc = "";
  for (const raw of text.split("\n")) {
    if (raw.endsWith("\\")) {
      acc += `${raw.slice(0, -1)} `;
      continue;
    }
    const line = (acc + raw).trim();
    acc = "";
    if (line !== "" && !line.startsWith("#")) out.push(line);
  }
  return out;
}

export function parseGrubConfig(text: string, vars: Vars): ParsedConfig {
  const lines = logicalLines(text);
  const assignments: ParsedConfig["assignments"] = [];
  let i = 0;
  const header = (line: string): { title: string; id?: string } => {
    const words = splitWords(line.replace(/\{\s*$/, ""), { menuentry_id_option: "--id", ...vars }).slice(1);
    let title = "";
    let id: string | undefined;
    for (let w = 0; w < words.length; w++) {
      const word = words[w]!;
      if (word === "--id") id = words[++w];
      else if (["--class", "--users", "--hotkey", "--source"].includes(word)) w++;
      else if (word.startsWith("--")) continue;
      else if (title === "") title = word;
    }
    return { title, id };
  };
  const block = (): string[] => {
    const body: string[] = [];
    let depth = 1;
    while (i < lines.length) {
      const line = lines[i++]!;
      if (line === "}") {
        if (--depth === 0) return body;
      } else if (line.endsWith("{")) {
        depth++;
      }
      body.push(line);
    }
    return body;
  };
  const menu = (inside: boolean): (MenuItem | { kind: "blscfg" })[] => {
    const items: (MenuItem | { kind: "blscfg" })[] = [];
    while (i < lines.length) {
      const line = lines[i++]!;
      if (inside && line === "}") return items;
      if (/^menuentry\s/.test(line)) {
        items.push({ kind: "menuentry", ...header(line), body: block() });
      } else if (/^submenu\s/.test(line)) {
        const h = header(line);
        items.push({ kind: "submenu", ...h, entries: menu(true) as MenuItem[] });
      } else if (/^function\s/.test(line)) {
        block();
      } else if (line === "blscfg") {
        items.push({ kind: "blscfg" });
      } else {
        const m = ASSIGN.exec(line);
        if (m) assignments.push({ name: m[1]!, raw: m[2]!, value: splitWords(m[2]!, vars).join(" ") });
      }
    }
    return items;
  };
  return { items: menu(false), assignments };
}

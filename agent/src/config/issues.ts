/**
 * Turning validation failures into the one-paragraph messages users see: file, line (found by
 * scanning the TOML text for the key, since the parsed object has no positions), field, problem.
 */
import type * as v from "valibot";
import { ConfigError } from "../errors.ts";
import { escapeText } from "../escape.ts";

export interface ConfigIssue {
  file: string;
  /** 1-based line of the offending key or table, when it could be found. */
  line?: number;
  /** Dotted TOML path, e.g. "rootfs.encrypt.kbs.kbs_url". */
  field?: string;
  message: string;
}

/** One line; keys and values in it may come from user data, so control characters are escaped. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file} line ${issue.line}`;
  const text = issue.field ? `${where}: ${issue.field}: ${issue.message}` : `${where}: ${issue.message}`;
  return escapeText(text);
}

/** A config file failed validation. Carries every problem found; the message shows the first. */
export class ConfigFileError extends ConfigError {
  override name = "ConfigFileError";
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], options: { cause?: unknown; hint?: string } = {}) {
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem(s))` : "";
    super(`${formatIssue(issues[0]!)}${more}`, options);
    this.issues = issues;
  }
}

type AnyIssue = v.BaseIssue<unknown>;

/**
 * The field names an object schema accepts at `path` (TOML keys), for "unknown field" messages.
 * v.pipe() keeps its first schema's `entries`; v.optional() keeps the schema in `wrapped`.
 */
export function fieldsAt(schema: v.GenericSchema | undefined, path: readonly string[]): string[] | undefined {
  let node = schema as { type?: string; entries?: Record<string, unknown>; wrapped?: unknown } | undefined;
  const unwrap = () => {
    while (node && node.wrapped !== undefined) node = node.wrapped as typeof node;
  };
  for (const key of path) {
    unwrap();
    node = node?.entries?.[key] as typeof node;
  }
  unwrap();
  return node?.entries ? Object.keys(node.entries) : undefined;
}

/**
 * Longest key or value quoted in an issue: configuration can come from user data the host
 * writes, and a 60 KB value must not become a 60 KB console line.
 */
export const ISSUE_QUOTE_MAX = 120;

const clip = (text: string | undefined): string | undefined =>
  text !== undefined && text.length > ISSUE_QUOTE_MAX
    ? `${text.slice(0, ISSUE_QUOTE_MAX)}... (${text.length} characters)`
    : text;

/** The message for one valibot issue; `allowed` lists the fields of the table an unknown key is in. */
export function describeIssue(issue: AnyIssue, key: string | undefined, allowed?: string[]): string {
  if (issue.type === "strict_object" && issue.expected === "never") {
    return allowed
      ? `unknown field '${clip(key)}'; the fields here are: ${allowed.join(", ")}`
      : `unknown field '${clip(key)}'. Check the spelling against docs/key-providers.md and the README.`;
  }
  if (issue.received === "undefined" && issue.kind === "schema") return "missing required field";
  if (issue.kind === "schema") return `expected ${issue.expected}, got ${clip(issue.received)}`;
  return issue.message;
}

/**
 * Convert valibot issues (paths are TOML keys) into ConfigIssues with line numbers. Given the
 * schema that produced them, "unknown field" messages also list the accepted fields.
 */
export function issuesFromValibot(
  file: string,
  text: string,
  issues: readonly AnyIssue[],
  schema?: v.GenericSchema,
): ConfigIssue[] {
  return issues.map((issue) => {
    const path = (issue.path ?? []).map((item) => String(item.key));
    const line = findKeyLine(text, path);
    return {
      file,
      ...(line === undefined ? {} : { line }),
      ...(path.length > 0 ? { field: path.map((k) => clip(k)).join(".") } : {}),
      message: describeIssue(issue, path.at(-1), fieldsAt(schema, path.slice(0, -1))),
    };
  });
}

const isSpace = (c: string | undefined) => c === " " || c === "\t";
const isBare = (c: string) => /[A-Za-z0-9_-]/.test(c);

/** End of the quoted string starting at `i` (the index after its closing quote), or -1. */
function skipQuoted(s: string, i: number): number {
  const quote = s[i]!;
  for (let j = i + 1; j < s.length; j++) {
    if (quote === '"' && s[j] === "\\") j++;
    else if (s[j] === quote) return j + 1;
  }
  return -1;
}

/**
 * Dotted keys, with optional quotes around each part: a."b.c".d. One pass over the text (the
 * file is the host's: a backtracking pattern here took a minute on a line of spaces).
 */
function splitKey(raw: string): string[] {
  const parts: string[] = [];
  let i = 0;
  for (;;) {
    while (isSpace(raw[i])) i++;
    if (i >= raw.length) return parts;
    const c = raw[i]!;
    if (c === '"' || c === "'") {
      const end = skipQuoted(raw, i);
      if (end < 0) return parts;
      const inner = raw.slice(i + 1, end - 1);
      parts.push(c === '"' ? inner.replace(/\\(.)/g, "$1") : inner);
      i = end;
    } else {
      const start = i;
      while (i < raw.length && isBare(raw[i]!)) i++;
      if (i === start) return parts;
      parts.push(raw.slice(start, i));
    }
    while (isSpace(raw[i])) i++;
    if (raw[i] === ".") i++;
    else return parts;
  }
}

/** A TOML line's table header (`[a.b]`, `[[a]]`) or key (`a.b = v`), found in one pass. */
function scanLine(line: string): { header: string } | { key: string; value: string } | undefined {
  let i = 0;
  while (isSpace(line[i])) i++;
  if (line[i] === "[") {
    i += line[i + 1] === "[" ? 2 : 1;
    const start = i;
    while (i < line.length && line[i] !== "]") {
      if (line[i] === '"' || line[i] === "'") {
        const end = skipQuoted(line, i);
        if (end < 0) return undefined;
        i = end;
      } else i++;
    }
    return i < line.length ? { header: line.slice(start, i) } : undefined;
  }
  const start = i;
  while (i < line.length && line[i] !== "=") {
    const c = line[i]!;
    if (c === '"' || c === "'") {
      const end = skipQuoted(line, i);
      if (end < 0) return undefined;
      i = end;
    } else if (isBare(c) || c === "." || isSpace(c)) i++;
    else return undefined;
  }
  if (i >= line.length || i === start) return undefined;
  let v = i + 1;
  while (isSpace(line[v])) v++;
  return { key: line.slice(start, i), value: line.slice(v) };
}

/**
 * 1-based line where `path` is defined in TOML `text`: the key line for a value, the header for
 * a table. When the exact path is absent (a missing field), the line of its closest parent table.
 */
export function findKeyLine(text: string, path: string[]): number | undefined {
  const lines = text.split("\n");
  let table: string[] = [];
  let best: { line: number; depth: number } | undefined;
  let multiline: string | undefined;
  const consider = (full: string[], line: number) => {
    let depth = 0;
    while (depth < full.length && depth < path.length && full[depth] === path[depth]) depth++;
    if (depth !== full.length) {
      // A key under the wanted path (e.g. rootfs.encrypt.kbs.url when asking for rootfs.encrypt)
      // still locates it when there is no header for the exact path.
      if (depth === path.length && (!best || best.depth < depth)) best = { line, depth };
      return;
    }
    if (!best || depth > best.depth) best = { line, depth };
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (multiline) {
      if (line.includes(multiline)) multiline = undefined;
      continue;
    }
    const scanned = scanLine(line);
    if (scanned && "header" in scanned) {
      table = splitKey(scanned.header);
      consider(table, i + 1);
      continue;
    }
    if (scanned) {
      consider([...table, ...splitKey(scanned.key)], i + 1);
      const value = scanned.value;
      for (const quote of ['"""', "'''"]) {
        if (value.startsWith(quote) && !value.slice(3).includes(quote)) multiline = quote;
      }
    }
  }
  return best && best.depth > 0 ? best.line : undefined;
}

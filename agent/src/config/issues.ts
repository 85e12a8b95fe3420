/**
 * Turning validation failures into the one-paragraph messages users see: file, line (found by
 * scanning the TOML text for the key, since the parsed object has no positions), field, problem.
 */
import type * as v from "valibot";
import { ConfigError } from "../errors.ts";

export interface ConfigIssue {
  file: string;
  /** 1-based line of the offending key or table, when it could be found. */
  line?: number;
  /** Dotted TOML path, e.g. "rootfs.encrypt.kbs.kbs_url". */
  field?: string;
  message: string;
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file} line ${issue.line}`;
  return issue.field ? `${where}: ${issue.field}: ${issue.message}` : `${where}: ${issue.message}`;
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

/** The message for one valibot issue; `allowed` lists the fields of the table an unknown key is in. */
export function describeIssue(issue: AnyIssue, key: string | undefined, allowed?: string[]): string {
  if (issue.type === "strict_object" && issue.expected === "never") {
    return allowed
      ? `unknown field '${key}'; the fields here are: ${allowed.join(", ")}`
      : `unknown field '${key}'. Check the spelling against docs/key-providers.md and the README.`;
  }
  if (issue.received === "undefined" && issue.kind === "schema") return "missing required field";
  if (issue.kind === "schema") return `expected ${issue.expected}, got ${issue.received}`;
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
      ...(path.length > 0 ? { field: path.join(".") } : {}),
      message: describeIssue(issue, path.at(-1), fieldsAt(schema, path.slice(0, -1))),
    };
  });
}

function splitKey(raw: string): string[] {
  // Dotted keys, with optional quotes around each part: a."b.c".d
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/gy;
  let m: RegExpExecArray | null = re.exec(raw);
  while (m !== null && m[0] !== "") {
    parts.push(m[1] ?? m[2] ?? m[3] ?? "");
    m = re.exec(raw);
  }
  return parts;
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
    const header = /^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$/.exec(line);
    if (header) {
      table = splitKey(header[1]!);
      consider(table, i + 1);
      continue;
    }
    const kv = /^\s*((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\s-])+?)\s*=\s*(.*)$/.exec(line);
    if (kv) {
      consider([...table, ...splitKey(kv[1]!)], i + 1);
      const value = kv[2]!;
      for (const quote of ['"""', "'''"]) {
        if (value.startsWith(quote) && !value.slice(3).includes(quote)) multiline = quote;
      }
    }
  }
  return best && best.depth > 0 ? best.line : undefined;
}

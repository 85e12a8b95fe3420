/**
 * Errors a user sees are FdeError subclasses with documented exit codes (agent/src/errors.ts).
 * A plain `throw new Error(` in product code reaches the user without an exit-code decision or a
 * hint; only the parser files below may use it, because their callers catch and rewrap what they
 * throw (or it marks a build defect, not input).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { EXIT_FAILURE, EXIT_USAGE, FdeError, UsageError } from "../../src/errors.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const SRC = join(ROOT, "agent/src");

/** Files (relative to agent/src) allowed to throw plain Errors, and why. */
export const PLAIN_THROW_ALLOWLIST: Record<string, string> = {
  "tpm/marshal.ts": "TPM wire-format reader: its callers name the structure being read",
  "kbs/ttrpc.ts": "ttrpc frame decoder: kbs/cdh.ts catches and rewraps",
  "disk/image/lvm.ts": "LVM metadata tokenizer: parseMetadata catches and names the device",
  "aliyun/dkms-proto.ts": "a message missing from the compiled-in descriptor is a build defect",
};

/** `throw new Error(` or `throw Error(`, the plain Error only (not FdeError, TypeError, ...). */
const PLAIN_THROW = /\bthrow\s+(?:new\s+)?Error\s*\(/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [path] : [];
  });
}

/** "file:line: text" for every plain throw outside the allowlist. */
export function plainThrows(files: { path: string; text: string }[]): string[] {
  const found: string[] = [];
  for (const { path, text } of files) {
    if (PLAIN_THROW_ALLOWLIST[path]) continue;
    text.split("\n").forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "").trim();
      if (code.startsWith("*") || code.startsWith("/*")) return;
      if (PLAIN_THROW.test(code)) found.push(`${path}:${i + 1}: ${code}`);
    });
  }
  return found;
}

const files = sourceFiles(SRC).map((p) => ({ path: relative(SRC, p), text: readFileSync(p, "utf8") }));

describe("errors in product code", () => {
  test("no plain `throw new Error(` outside the parser allowlist", () => {
    expect(plainThrows(files)).toEqual([]);
  });

  test("the check finds a plain throw (and not FdeError, comments or allowlisted files)", () => {
    const found = plainThrows([
      { path: "x/a.ts", text: 'if (x) throw new Error("bad");\nthrow Error(`also`);' },
      {
        path: "x/b.ts",
        text: 'throw new FdeError("ok");\n// throw new Error("comment")\n * throw new Error(',
      },
      { path: "tpm/marshal.ts", text: 'throw new Error("allowed");' },
    ]);
    expect(found).toEqual(['x/a.ts:1: if (x) throw new Error("bad");', "x/a.ts:2: throw Error(`also`);"]);
  });

  test("every allowlisted file exists and still needs its entry", () => {
    for (const path of Object.keys(PLAIN_THROW_ALLOWLIST)) {
      const file = files.find((f) => f.path === path);
      expect(file, path).toBeDefined();
      expect(PLAIN_THROW.test(file!.text), `${path} no longer throws a plain Error: drop it`).toBe(true);
    }
  });
});

describe("exit codes", () => {
  test("the README documents exactly the exit statuses errors.ts defines", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const paragraph = /Exit status:([\s\S]*?)\n\n/.exec(readme)?.[1] ?? "";
    const documented = [...paragraph.matchAll(/(?:^|;)\s*(\d+) /g)].map((m) => Number(m[1]));
    expect(documented).toEqual([0, EXIT_FAILURE, EXIT_USAGE]);
  });

  test("FdeError defaults to EXIT_FAILURE; UsageError is EXIT_USAGE", () => {
    expect(new FdeError("x").exitCode).toBe(EXIT_FAILURE);
    expect(new UsageError("x").exitCode).toBe(EXIT_USAGE);
  });
});

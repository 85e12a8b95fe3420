/** Every ```toml example in the README and docs/*.md must load with the real schemas. */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as v from "valibot";
import { FdeSchema, GlobalSchema } from "../../src/config/fde.ts";
import { EncryptSchema, PROVIDER_TYPES, parseToml, validate } from "../../src/config/index.ts";
import { MetadataSchema } from "../../src/config/metadata.ts";
import { VolumeSchema } from "../../src/config/volume.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const VolumeEncryptSchema = v.strictObject({ encrypt: EncryptSchema });

/** The schema an example is meant for, judged from its top-level tables. */
function schemaFor(data: Record<string, unknown>): v.GenericSchema {
  const keys = Object.keys(data);
  if (keys.length === 1 && keys[0] === "encrypt") return VolumeEncryptSchema;
  if (keys.includes("volume")) return VolumeSchema;
  if (keys.some((k) => k === "rootfs" || k === "delta" || k === "data")) return FdeSchema;
  if (keys.includes("boot")) return GlobalSchema;
  if (keys.includes("root_hash")) return MetadataSchema;
  throw new Error(`cannot tell which file this example is (top-level keys: ${keys.join(", ")})`);
}

function examples(file: string): { line: number; text: string }[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const found: { line: number; text: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```toml") continue;
    const start = i + 1;
    while (i + 1 < lines.length && lines[i + 1]!.trim() !== "```") i++;
    found.push({ line: start + 1, text: lines.slice(start, i + 1).join("\n") });
  }
  return found;
}

const DOCS = readdirSync(join(ROOT, "docs"))
  .filter((f) => f.endsWith(".md"))
  .map((f) => `docs/${f}`);

for (const file of ["README.md", ...DOCS]) {
  describe(`${file} examples`, () => {
    const list = examples(file);
    for (const { line, text } of list) {
      test(`example at line ${line} loads`, () => {
        const source = parseToml(`${file}:${line}`, text);
        validate(schemaFor(source.data), source);
      });
    }
    if (file === "docs/key-providers.md") {
      test("every provider has at least one example", () => {
        for (const type of PROVIDER_TYPES)
          expect(list.some((e) => e.text.includes(`encrypt.${type}]`))).toBe(true);
      });
    }
  });
}

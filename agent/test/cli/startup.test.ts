/**
 * Start-up stays lean: bundle the agent as `make build` does (with --splitting) and walk the
 * static imports. What `--version` and `config check` load before doing anything must not pull in
 * the KBS, KMS, TPM or image code, nor the Node built-ins those need (each costs start-up time).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../../..");
const HEAVY_BUILTINS = ["crypto", "net", "tls", "zlib", "child_process", "bun:ffi", "http", "https"];
const HEAVY_PACKAGES = ["jose", "node-forge", "@bufbuild", "@peculiar", "ofetch"];

let out: string;
beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), "startup-"));
  const build = Bun.spawnSync(
    [
      join(ROOT, "node_modules/.bin/bun"),
      "build",
      "--splitting",
      "--format=esm",
      "--target=bun",
      "--outdir",
      out,
      join(ROOT, "agent/src/main.ts"),
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  if (build.exitCode !== 0) throw new Error(`bun build failed: ${build.stderr}`);
}, 60_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** Every chunk and built-in reachable from `entry` through static imports (not import()). */
function staticClosure(entry: string): { chunks: Set<string>; builtins: Set<string>; sources: string } {
  const chunks = new Set<string>();
  const builtins = new Set<string>();
  let sources = "";
  const visit = (file: string) => {
    if (chunks.has(file)) return;
    chunks.add(file);
    const text = readFileSync(join(out, file), "utf8");
    sources += text;
    for (const m of text.matchAll(/^import\s+(?:[^"';]*?\s+from\s+)?"([^"]+)";?$/gms)) {
      const spec = m[1]!;
      if (spec.startsWith("./")) visit(spec.slice(2));
      else builtins.add(spec.replace(/^node:/, ""));
    }
  };
  visit(entry);
  return { chunks, builtins, sources };
}

/** Packages whose code is in the given bundle text (the bundler marks each module's origin). */
const packagesIn = (sources: string) =>
  HEAVY_PACKAGES.filter((p) => sources.includes(`// node_modules/${p}`));

describe("start-up imports", () => {
  test("--version (the entry chunk) loads no dependency and no heavy built-in", () => {
    const { builtins, sources } = staticClosure("main.js");
    expect([...builtins].filter((b) => HEAVY_BUILTINS.includes(b))).toEqual([]);
    expect(sources).not.toContain("// node_modules/");
  });

  test("config check loads the config code only, not KBS/KMS/TPM/image code", () => {
    const chunk = readdirSync(out).find((f) => f.startsWith("config-check-"));
    expect(chunk).toBeDefined();
    const { builtins, sources } = staticClosure(chunk!);
    expect([...builtins].filter((b) => HEAVY_BUILTINS.includes(b))).toEqual([]);
    expect(packagesIn(sources)).toEqual([]);
    expect(sources).toContain("// node_modules/valibot");
    expect(sources).not.toMatch(/\/\/ agent\/src\/(kbs|aliyun|tpm|attest|disk|refvalue|convert)\//);
  });
});

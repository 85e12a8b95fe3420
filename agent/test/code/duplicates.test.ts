/**
 * Names and formats defined once (#16): a second copy in product code (or the boot benchmark)
 * fails here, naming the file, instead of drifting silently.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../../..");

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

const files = [...tsFiles(join(ROOT, "agent/src")), join(ROOT, "bench/boot.ts")].map((path) => ({
  path: relative(ROOT, path),
  text: readFileSync(path, "utf8"),
}));

/** Files whose code (comments stripped) matches `pattern`. */
function definedIn(pattern: RegExp): string[] {
  return files
    .filter((f) =>
      pattern.test(
        f.text
          .replace(/\/\*[\s\S]*?\*\//g, "")
          .split("\n")
          .map((l) => l.replace(/^\s*\/\/.*$/, ""))
          .join("\n"),
      ),
    )
    .map((f) => f.path)
    .sort();
}

describe("defined once", () => {
  test("the boot stage names: boot/stages.ts", () => {
    expect(definedIn(/"initrd-fde-(before|after)-sysroot"/)).toEqual(["agent/src/boot/stages.ts"]);
  });

  test("the ext4 superblock magic: disk/image/ext4.ts", () => {
    expect(definedIn(/0xef53/i)).toEqual(["agent/src/disk/image/ext4.ts"]);
  });

  test("the LV mapper paths /dev/mapper/cryptpilot-*: disk/names.ts", () => {
    expect(definedIn(/["`]\/dev\/mapper\/cryptpilot-/)).toEqual([]);
    expect(definedIn(/\bVG = "cryptpilot"/)).toEqual(["agent/src/disk/names.ts"]);
  });

  test("the reserved data-volume names: disk/names.ts", () => {
    expect(definedIn(/\["rootfs", "rootfs_decrypted"/)).toEqual([]);
  });

  test("blkid's export parser: disk/blkid.ts", () => {
    expect(definedIn(/function parseBlkidExport/)).toEqual(["agent/src/disk/blkid.ts"]);
  });

  test("programs are started only by subprocess.ts, and only through command.ts run()", () => {
    const product = (paths: string[]) => paths.filter((p) => p.startsWith("agent/src/"));
    expect(product(definedIn(/Bun\.spawn|spawnSync|child_process/))).toEqual(["agent/src/subprocess.ts"]);
    expect(product(definedIn(/spawnBounded\(/))).toEqual(["agent/src/command.ts", "agent/src/subprocess.ts"]);
  });

  test("stderr is written only through log.ts (console.*; process.stderr costs start-up time)", () => {
    expect(definedIn(/process\.stderr\.write/)).toEqual([]);
  });

  test("one home per name: only an index.ts re-exports (no compatibility re-exports left behind)", () => {
    const reexport = /^export\s+(?:type\s+)?(?:\*|\{[^}]*\})(?:\s+as\s+\w+)?(?:\s+from\s+"[^"]+")?;/m;
    const product = files.filter((f) => f.path.startsWith("agent/src/") && !f.path.endsWith("/index.ts"));
    expect(product.filter((f) => reexport.test(f.text)).map((f) => f.path)).toEqual([]);
  });

  test("the retry loop and policy type: net/retry.ts", () => {
    expect(definedIn(/function backoffDelay|interface RetryPolicy \{|const CERTIFICATE_CODE/)).toEqual([
      "agent/src/net/retry.ts",
    ]);
  });
});

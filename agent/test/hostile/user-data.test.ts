/**
 * Hostile user data (#17): the host writes the instance's user data, so every crafted bundle must
 * end, within bounds, in the initrd's configuration and one short, escaped console line; nothing
 * crafted is measured or used. Also a handoff path replaced by a FIFO, and an oversized IMDS reply.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { USER_DATA_MAX_BYTES } from "../../src/aliyun/imds.ts";
import { BUNDLE_HEADER } from "../../src/config/bundle.ts";
import { parseConfigTexts } from "../../src/config/index.ts";
import { aliyunUserData, HANDOFF_FILE, readHandoff, selectConfig } from "../../src/config/sources/index.ts";
import { bounded } from "./limits.ts";

const INITRD = parseConfigTexts(
  { fde: '[rootfs]\n[delta.encrypt.exec]\ncommand = "initrd-key"\n' },
  "initrd",
);
const H = `${BUNDLE_HEADER}\n`;
const N = USER_DATA_MAX_BYTES - 1024;
/** A console line about a refused bundle stays short whatever the bundle holds. */
const LINE_MAX = 1500;

const CRAFTED: Record<string, string> = {
  "arrays nested 30000 deep": `${H}[fde.rootfs]\nx = ${"[".repeat(N / 2)}${"]".repeat(N / 2)}\n`,
  "inline tables nested 15000 deep": `${H}[fde.rootfs]\nx = ${"{a=".repeat(N / 4)}1${"}".repeat(N / 4)}\n`,
  "5000 unknown keys": `${H}[fde.rootfs]\n${Array.from({ length: N / 12 }, (_, i) => `k${i} = 1`).join("\n")}\n`,
  "5000 tables": `${H}${Array.from({ length: N / 12 }, (_, i) => `[fde.t${i}]`).join("\n")}\n`,
  "a 60 KB value": `${H}[fde.rootfs]\ndelta_location = "${"x".repeat(N)}"\n`,
  "a 60 KB key": `${H}[fde.rootfs]\n"${"k".repeat(N)}" = 1\n`,
  "a dotted key 30000 deep": `${H}${"a.".repeat(N / 2)}b = 1\n`,
  "terminal escapes in a key and a value": `${H}[fde.rootfs]\n"\\u001b[2J\\u001b]0;owned\\u0007" = "\\u001b[31m"\n`,
  "not UTF-8-clean TOML (NUL)": `${H}[fde.rootfs]\nx = "\u0000"\n`,
};

describe("crafted user-data bundles", () => {
  for (const [name, text] of Object.entries(CRAFTED)) {
    test(`${name}: initrd configuration, one short escaped line, nothing measured`, async () => {
      const lines: string[] = [];
      let measured = 0;
      const selected = await bounded(
        () =>
          selectConfig({
            initrd: INITRD,
            sources: [{ name: "crafted user data", read: async () => ({ text }) }],
            measure: async () => {
              measured++;
              return { register: "test" };
            },
            warn: (l) => lines.push(l),
            info: (l) => lines.push(l),
          }),
        { ms: 3000, mib: 200 },
      );
      expect(selected.source).toBe("initrd");
      expect(measured).toBe(0);
      expect(lines).toHaveLength(1);
      expect(lines[0]!).toStartWith("crafted user data");
      expect(lines[0]!.length).toBeLessThan(LINE_MAX);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: no raw control character may reach the console
      expect(lines[0]!).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    });
  }
});

describe("the handoff and the metadata service", () => {
  const dir = mkdtempSync(join(tmpdir(), "hostile-user-data-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a FIFO at the handoff path: an error naming it, not a hang", async () => {
    mkdirSync(join(dir, "run"));
    execFileSync("mkfifo", [join(dir, "run", HANDOFF_FILE)]);
    const err = await bounded(() => readHandoff(join(dir, "run")).catch((e: unknown) => e), {
      ms: 3000,
      mib: 50,
    });
    expect(String(err)).toContain("not a regular file");
  });

  test("a metadata service answering with megabytes: refused within bounds", async () => {
    const big = "#".repeat(4 * 1024 * 1024);
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (req) => new Response(new URL(req.url).pathname === "/latest/api/token" ? "token" : big),
    });
    try {
      const err = await bounded(
        () =>
          aliyunUserData({ endpoint: `http://127.0.0.1:${server.port}` })
            .read()
            .catch((e: unknown) => e),
        { ms: 5000, mib: 100 },
      );
      expect(err).toBeInstanceOf(Error);
      expect(String(err)).toMatch(/more than the 1 MiB accepted/);
    } finally {
      server.stop(true);
    }
  });
});

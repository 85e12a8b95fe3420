/** `cryptpilot-crypt` (a symlink to the binary) speaks upstream's command line. */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cryptArgv } from "../../src/volume/crypt-argv.ts";

const BINARY = resolve(import.meta.dir, "../../../dist/cryptpilot-fde");
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

test("upstream commands map onto volume ...", () => {
  expect(cryptArgv(["open", "data0"])).toEqual(["volume", "open", "data0"]);
  expect(cryptArgv(["-c", "/etc/x", "show", "--json"])).toEqual(["-c", "/etc/x", "volume", "show", "--json"]);
  expect(cryptArgv(["--config-dir", "/d", "config", "check", "--keep-checking"])).toEqual([
    "--config-dir",
    "/d",
    "volume",
    "check",
    "--keep-checking",
  ]);
  expect(cryptArgv(["boot-service", "--stage", "system-volumes-auto-open"])).toEqual([
    "volume",
    "open",
    "--auto",
  ]);
  expect(cryptArgv(["boot-service", "--stage=system-volumes-auto-open"])).toEqual([
    "volume",
    "open",
    "--auto",
  ]);
  expect(cryptArgv(["init", "a", "--force-reinit", "-y"])).toEqual([
    "volume",
    "init",
    "a",
    "--force-reinit",
    "-y",
  ]);
  expect(cryptArgv(["--help"])).toEqual(["--help"]);
});

test.skipIf(!existsSync(BINARY))(
  "the compiled binary behaves as cryptpilot-crypt through a symlink",
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "crypt-argv-"));
    dirs.push(dir);
    const link = join(dir, "cryptpilot-crypt");
    symlinkSync(BINARY, link);
    const proc = Bun.spawn([link, "-c", dir, "show"], { stdout: "pipe", stderr: "pipe" });
    expect(await proc.exited).toBe(0);
    expect(await new Response(proc.stdout).text()).toContain(`No data volumes configured in ${dir}/volumes`);
  },
);

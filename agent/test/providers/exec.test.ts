import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecConfig } from "../../src/config/providers/index.ts";
import { KeyProviderError } from "../../src/errors.ts";
import { create } from "../../src/providers/exec.ts";
import { createProvider } from "../../src/providers/index.ts";

const ctx = { volume: "delta", configDir: "/nonexistent", freshKey: "allowed" } as const;
const exec = (command: string, args: string[] = [], timeoutMs = 30_000): ExecConfig => ({
  type: "exec",
  command,
  args,
  timeoutMs,
});

describe("exec provider", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "exec-provider-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const rejection = async (config: ExecConfig): Promise<KeyProviderError> => {
    try {
      await create(config, ctx).getKey();
    } catch (err) {
      expect(err).toBeInstanceOf(KeyProviderError);
      return err as KeyProviderError;
    }
    throw new Error("getKey resolved but should have failed");
  };

  test("stdout is the key byte for byte: binary, NUL and trailing newline kept", async () => {
    const key = await create(exec("printf", ["\\000\\001\\377key\\n\\t"]), ctx).getKey();
    expect([...key]).toEqual([0, 1, 0xff, 0x6b, 0x65, 0x79, 0x0a, 0x09]);
  });

  test("runs without a shell: metacharacters reach the program literally", async () => {
    const key = await create(exec("printf", ["%s", "$(id) ; `x` | *"]), ctx).getKey();
    expect(new TextDecoder().decode(key)).toBe("$(id) ; `x` | *");
  });

  test("a non-zero exit is an error carrying the command's stderr", async () => {
    const err = await rejection(exec("sh", ["-c", "echo 'vault sealed' >&2; exit 7"]));
    expect(err.message).toContain("exited with code 7");
    expect(err.message).toContain("vault sealed");
    expect(err.message).toContain("volume delta");
  });

  test("empty output is an error", async () => {
    const err = await rejection(exec("true"));
    expect(err.message).toContain("printed nothing");
  });

  test("a missing program is an error naming it", async () => {
    const err = await rejection(exec(join(dir, "no-such-program")));
    expect(err.message).toContain("no-such-program");
    expect(err.message).toContain("could not be started");
  });

  test("the timeout kills a hanging command", async () => {
    const started = Date.now();
    const err = await rejection(exec("sleep", ["30"], 300));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err.message).toContain("did not finish within 0.3 s");
  });

  test("the timeout also kills what the command started (a shell's children hold stdout)", async () => {
    const started = Date.now();
    const marker = join(dir, "child-survived");
    const err = await rejection(exec("sh", ["-c", `sleep 3; touch ${marker}; echo key`], 300));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.message).toContain("did not finish within 0.3 s");
    await Bun.sleep(3500);
    expect(await Bun.file(marker).exists()).toBe(false);
  }, 15_000);

  test("a process that left the group does not hold getKey past the timeout and a grace second", async () => {
    const started = Date.now();
    const err = await rejection(exec("sh", ["-c", "setsid sleep 4 & sleep 5"], 300));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err.message).toContain("did not finish");
  }, 15_000);

  test("oversized output is rejected instead of read into memory", async () => {
    const err = await rejection(exec("yes"));
    expect(err.message).toContain("more than");
  });

  test("the error message never contains the arguments (they may hold the key)", async () => {
    const err = await rejection(exec("sh", ["-c", "exit 1", "argument-secret"]));
    expect(err.message).not.toContain("argument-secret");
  });

  test("a script from the config directory works through createProvider", async () => {
    const script = join(dir, "getkey");
    writeFileSync(script, "#!/bin/sh\nprintf 'from-script'\n");
    chmodSync(script, 0o755);
    const provider = await createProvider(exec(script), ctx);
    expect(new TextDecoder().decode(await provider.getKey())).toBe("from-script");
    expect(provider.describe()).toBe(`exec ${script}`);
  });
});

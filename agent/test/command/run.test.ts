/**
 * command.ts run(): the one way a program is started, with what the key and token programs need
 * (quiet, an output cap, complete output) and a CommandError that says which way a run failed.
 */
import { afterEach, describe, expect, spyOn, test } from "bun:test";
import { run } from "../../src/command.ts";
import { CommandError } from "../../src/errors.ts";
import { setVerbose } from "../../src/log.ts";

async function failure(p: Promise<unknown>): Promise<CommandError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CommandError) return e;
    throw e;
  }
  throw new Error("expected a CommandError");
}

/** Runs `fn` with verbose logging and returns what it logged. */
async function logged(fn: () => Promise<unknown>): Promise<string> {
  const lines: string[] = [];
  const spy = spyOn(console, "error").mockImplementation((...a: unknown[]) => {
    lines.push(a.map(String).join(" "));
  });
  setVerbose(true);
  try {
    await fn().catch(() => {});
  } finally {
    setVerbose(false);
    spy.mockRestore();
  }
  return lines.join("\n");
}

afterEach(() => setVerbose(false));

describe("run() failures name their kind", () => {
  test("start, exit, timeout, overflow", async () => {
    const start = await failure(run("/nonexistent/tool", []));
    expect([start.failure, start.code]).toEqual(["start", null]);
    expect(start.message).toContain("/nonexistent/tool");

    const exit = await failure(run("sh", ["-c", "echo why >&2; exit 3"]));
    expect([exit.failure, exit.code, exit.stderr.trim()]).toEqual(["exit", 3, "why"]);
    expect(exit.message).toBe("sh -c failed with exit code 3: why");

    const timeout = await failure(run("sleep", ["5"], { timeoutMs: 100 }));
    expect(timeout.failure).toBe("timeout");
    // The reason is in the message but not in the program's own stderr.
    expect(timeout.message).toContain("timed out after 100 ms");
    expect(timeout.stderr).not.toContain("timed out");

    const overflow = await failure(run("head", ["-c", "100", "/dev/zero"], { maxStdout: 10 }));
    expect(overflow.failure).toBe("overflow");
    expect(overflow.message).toContain("printed more than 10 bytes on stdout");
  });

  test("requireCompleteOutput: a leftover holding stdout fails the run; tools keep the old rule", async () => {
    const script = "sleep 3 & echo partial";
    const strict = await failure(run("sh", ["-c", script], { requireCompleteOutput: true }));
    expect(strict.failure).toBe("leftovers");
    expect(strict.leftovers.length).toBeGreaterThan(0);
    const lax = await run("sh", ["-c", script]);
    expect(new TextDecoder().decode(lax.stdout).trim()).toBe("partial");
  });
});

describe("quiet", () => {
  const SECRET = "argument-secret-4711";
  test("a quiet run never logs or reports its arguments; a normal one logs them in verbose mode", async () => {
    let err: CommandError | undefined;
    const quiet = await logged(async () => {
      err = await failure(run("sh", ["-c", "exit 1", SECRET], { quiet: true, label: "the key program" }));
    });
    expect(quiet).toContain("the key program");
    expect(quiet).not.toContain(SECRET);
    expect(err!.message).not.toContain(SECRET);
    expect(err!.message).not.toContain("-c");

    const loud = await logged(() => run("sh", ["-c", "exit 0", SECRET]));
    expect(loud).toContain(SECRET);
  });
});
